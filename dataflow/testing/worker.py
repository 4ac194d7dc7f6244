"""Run ``dataflow worker`` as a child process, as Kubernetes would: env-configured, probed over HTTP.

Used by the integration tests and by ``make demo``. Every start, wait and stop has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from dataflow.errors import DataflowError


class WorkerError(DataflowError):
    """The worker did not become ready or did not stop in time; the message carries its log tail."""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WorkerProcess:
    """A ``dataflow worker`` child process with its own health port and log file."""

    def __init__(
        self,
        pipelines: Sequence[str | Path],
        env: Mapping[str, str],
        log_path: Path,
        *,
        health_port: int | None = None,
        extra_args: Sequence[str] = (),
        module: str = "dataflow.cli.main",
    ) -> None:
        self.pipelines = [str(p) for p in pipelines]
        self.health_port = health_port or _free_port()
        self.env = {**os.environ, **env, "SELDON_HEALTH_SERVER_PORT": str(self.health_port)}
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.module = module  # the command's module: the CLI, or a wrapper around it (experiments)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        cmd = [sys.executable, "-m", self.module, "worker"]
        for p in self.pipelines:
            cmd += ["--pipelines", p]
        self.proc = subprocess.Popen(
            [*cmd, *self.extra_args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def probe(self, path: str = "/ready") -> tuple[int, dict[str, Any] | None]:
        """(HTTP status, JSON body) of a health endpoint; (0, None) when nothing answers."""
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise WorkerError(
                    f"worker exited with {self.proc.returncode} before ready:\n{self.log_tail()}"
                )
            status, _ = self.probe("/ready")
            if status == 200:
                return
            time.sleep(0.25)
        raise WorkerError(f"worker not ready within {timeout:g} s:\n{self.log_tail()}")

    async def wait_ready_async(self, timeout: float = 90.0) -> None:
        await asyncio.to_thread(self.wait_ready, timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crashed pod: no shutdown, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
