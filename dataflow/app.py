"""``faust -A dataflow.app worker``: the app, built from the environment at import time.

Pipelines come from ``DATAFLOW_PIPELINES`` (a file or folder, comma-separated for several);
settings from the ``SELDON_*`` variables. Invalid pipelines stop the import with exit code 1.
"""

from __future__ import annotations

import asyncio
import sys

from dataflow.config import load_settings
from dataflow.control.yaml_source import router_from_paths
from dataflow.errors import DataflowError
from dataflow.runtime import admin, startup
from dataflow.runtime.app import DataflowApp, create_app


def _build() -> DataflowApp:
    settings = load_settings()
    if not settings.pipelines_path:
        sys.exit("error: set DATAFLOW_PIPELINES to a pipeline file or folder")
    try:
        paths = settings.pipelines_path.split(",")
        router = router_from_paths(paths, settings)
        # fail here with one line rather than with a traceback once Faust's loop runs
        admin.check_port_free(settings.health_port)
        admin.check_data_dir(settings)
        partitions = asyncio.run(startup.wait_for_kafka(settings, router))
        return create_app(settings, router, watch=paths, partitions=partitions)
    except DataflowError as exc:
        sys.exit(f"error: {exc}")
    except startup.Stopped as exc:
        print(f"dataflow: {exc}", file=sys.stderr)
        sys.exit(0)


app = _build()
