"""``make demo``: a real broker, the stand-in models, a worker, and one request through ``tfsimples``.

Starts everything it needs on free local ports, prints the pipeline's answer, checks it against the
arithmetic (OUTPUT0 = OUTPUT1 = 2, 4, ..., 32 for INPUT0 = INPUT1 = 1..16), stops what it started and
exits 0 — or exits 1 with the reason and the relevant log tail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from dataflow.testing.worker import WorkerError, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state" / "demo"
PIPELINE = ROOT / "pipelines" / "tfsimples.yaml"
REQUEST = {
    "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    ]
}
EXPECTED = [2 * i for i in range(1, 17)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def _wait_for_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = "\n".join(path.read_text(errors="replace").splitlines()[-30:])
    raise WorkerError(f"stand-in models not ready within {timeout:g} s:\n{tail}")


def main() -> int:
    if STATE.exists():
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True)
    port, controller = _free_port(), _free_port()
    kafka_env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_RUN_DIR": str(STATE / "kafka"),
        "KAFKA_FRESH": "1",
    }
    kafka = str(ROOT / "deploy" / "local" / "kafka")
    env = {
        "SELDON_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "SELDON_POD_NAMESPACE": "demo",
        "DATAFLOW_DATA_DIR": str(STATE / "worker"),
    }
    models: subprocess.Popen[bytes] | None = None
    worker: WorkerProcess | None = None
    _say(f"starting a local Kafka broker on 127.0.0.1:{port} (the first run downloads its jars)")
    started = subprocess.run([kafka, "start"], env=kafka_env, timeout=900, check=False)
    if started.returncode != 0:
        _say("the broker did not start")
        return 1
    try:
        _say("starting stand-in models tfsimple1, tfsimple2")
        models_log = STATE / "models.log"
        with models_log.open("wb") as log:
            models = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dataflow.cli.main",
                    "models",
                    "serve",
                    "--models",
                    "tfsimple1,tfsimple2",
                ],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_for_line(models_log, "models ready", models, timeout=60)

        _say(f"starting a dataflow worker for {PIPELINE.relative_to(ROOT)}")
        worker = WorkerProcess([PIPELINE], env, STATE / "worker.log")
        worker.start()
        worker.wait_ready(timeout=90)

        _say("sending INPUT0 = INPUT1 = 1..16 (INT32 [1,16]) to pipeline tfsimples")
        cmd = [
            sys.executable,
            "-m",
            "dataflow.cli.main",
            "infer",
            "tfsimples",
            "--inputs",
            json.dumps(REQUEST),
        ]
        answer = subprocess.run(
            cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
        )
        if answer.returncode != 0:
            _say(f"the request failed: {answer.stderr.strip()}")
            return 1
        print(answer.stdout, flush=True)
        outputs = {o["name"]: o["data"] for o in json.loads(answer.stdout)["outputs"]}
        if outputs.get("OUTPUT0") != EXPECTED or outputs.get("OUTPUT1") != EXPECTED:
            _say(f"unexpected answer; wanted OUTPUT0 = OUTPUT1 = {EXPECTED}")
            return 1
        _say("OUTPUT0 = OUTPUT1 = 2, 4, ..., 32: the pipeline answered correctly")
        return 0
    except (WorkerError, subprocess.TimeoutExpired) as exc:
        _say(str(exc))
        return 1
    finally:
        _say("stopping what the demo started")
        if worker is not None:
            worker.stop(timeout=30)
        if models is not None and models.poll() is None:
            models.terminate()
            try:
                models.wait(timeout=20)
            except subprocess.TimeoutExpired:
                models.kill()
        subprocess.run([kafka, "stop"], env=kafka_env, timeout=60, check=False)


if __name__ == "__main__":
    sys.exit(main())
