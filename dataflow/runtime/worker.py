"""Running the Faust worker, with an exit code Kubernetes can act on."""

from __future__ import annotations

import logging

import faust

from dataflow.config import Settings
from dataflow.plan import Router
from dataflow.runtime.app import create_app

log = logging.getLogger(__name__)


def run_worker(
    settings: Settings,
    router: Router,
    loglevel: str = "info",
    watch: list[str] | None = None,
    partitions: dict[str, int] | None = None,
) -> int:
    """Run until stopped; 0 after a clean stop, 1 after a crash (so the pod is restarted).

    ``partitions`` are the topics' partition counts when the caller already created the topics.
    """
    app = create_app(settings, router, watch=watch, partitions=partitions)
    worker = faust.Worker(app, loglevel=loglevel.upper(), redirect_stdouts=False, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always exits
        code = 0
    if app.crashed or worker.crashed:
        reason = app.crash_reason or worker.crash_reason
        log.error("worker stopped after a fatal error: %s", reason)
        print(f"error: worker stopped after a fatal error: {reason}", flush=True)
        return 1
    return code
