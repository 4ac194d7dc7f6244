"""A broker of a test's own, for tests that stop, start or delay Kafka (the session's broker is shared)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KAFKA_SCRIPT, free_port


class Broker:
    """``deploy/local/kafka`` on a port of its own; nothing runs until :meth:`run` ``("start")``."""

    def __init__(self, run_dir: Path, *, fresh: bool = True) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_RUN_DIR": str(run_dir),
        }
        self._fresh = fresh

    def run(self, action: str) -> None:
        env = dict(self.env)
        if action == "start" and self._fresh:
            env["KAFKA_FRESH"] = "1"  # only the first start: later starts keep the data
            self._fresh = False
        done = subprocess.run(
            [str(KAFKA_SCRIPT), action], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False
