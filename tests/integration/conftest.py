"""Integration fixtures: settings for the test's namespace, workers as child processes, stand-in models."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from dataflow.config import Settings, load_settings
from dataflow.testing.gateway import ModelGateway, running_models
from dataflow.testing.worker import WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a worker of this test (its namespace isolates topics and consumer groups)."""
    return {
        "SELDON_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SELDON_POD_NAMESPACE": namespace,
        "DATAFLOW_DATA_DIR": str(tmp_path / "state"),
        "DATAFLOW_CONNECT_TIMEOUT_SECONDS": "20",
    }


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline YAML (dedented) into this test's pipeline folder and return the folder."""
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)

    def write(text: str, name: str | None = None) -> Path:
        body = textwrap.dedent(text).strip() + "\n"
        target = folder / (name or f"p{len(list(folder.iterdir()))}.yaml")
        target.write_text(body)
        return folder

    return write


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers (``start(path)``); all are stopped when the test ends."""
    started: list[WorkerProcess] = []

    def start(
        *pipelines: Path,
        extra_env: dict[str, str] | None = None,
        ready: bool = True,
        health_port: int | None = None,
    ) -> WorkerProcess:
        index = len(started)
        proc = WorkerProcess(
            list(pipelines),
            {**env, **(extra_env or {})},
            tmp_path / f"worker{index}.log",
            health_port=health_port,
        )
        started.append(proc)
        proc.start()
        if ready:
            proc.wait_ready(timeout=90)
        return proc

    yield start
    for proc in started:
        proc.stop(timeout=30)


@pytest.fixture
def models(settings: Settings) -> Callable[..., AbstractAsyncContextManager[ModelGateway]]:
    """``async with models("tfsimple1", ...) as gw``: stand-in models for this test's namespace."""

    def serve(*names: str) -> AbstractAsyncContextManager[ModelGateway]:
        return running_models(settings, names, timeout=30)

    return serve
