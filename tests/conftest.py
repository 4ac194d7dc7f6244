"""Shared fixtures: one real Kafka broker per test session, and a unique namespace per test.

A unique namespace gives each test its own topics (``seldon.<ns>.…``) and consumer groups, so tests
never see each other's records. The broker is started by ``deploy/local/kafka`` on a free port
(or taken from ``DATAFLOW_TEST_BOOTSTRAP`` when a developer already runs one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "deploy" / "local" / "kafka"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the session's broker (started on first use, stopped at the end)."""
    existing = os.environ.get("DATAFLOW_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    port = free_port()
    controller = free_port()
    run_dir = tmp_path_factory.mktemp("kafka")
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_RUN_DIR": str(run_dir),
        "KAFKA_FRESH": "1",
    }
    result = subprocess.run(
        [str(KAFKA_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"could not start the test broker:\n{result.stderr[-4000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True, timeout=60, check=False)


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: its topics and consumer groups are unique."""
    return f"t{uuid.uuid4().hex[:10]}"
