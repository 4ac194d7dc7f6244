"""``dataflow worker``: run a Faust worker for the pipelines under ``--pipelines``."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from dataflow.config import load_settings
from dataflow.errors import DataflowError


@click.command()
@click.option(
    "--pipelines",
    "pipelines",
    envvar="DATAFLOW_PIPELINES",
    multiple=True,
    type=click.Path(),
    help="Pipeline YAML file or folder (repeatable), watched for changes. Env: DATAFLOW_PIPELINES. "
    "Not needed in scheduler mode (SELDON_UPSTREAM_HOST set).",
)
@click.option(
    "--loglevel",
    "-l",
    envvar="SELDON_LOG_LEVEL_APP",
    default="info",
    show_default=True,
    # WARN is what Seldon's chart sets (Kotlin log levels); it means warning here
    type=click.Choice(["debug", "info", "warn", "warning", "error", "critical"], case_sensitive=False),
    help="Log level. Env: SELDON_LOG_LEVEL_APP.",
)
def worker(pipelines: tuple[str, ...], loglevel: str) -> None:
    """Run pipelines as Faust agents until SIGTERM/SIGINT. Exits non-zero on a fatal error."""
    from dataflow.control.yaml_source import router_from_paths
    from dataflow.runtime import admin, startup
    from dataflow.runtime.worker import run_worker

    loglevel = "warning" if loglevel.lower() == "warn" else loglevel.lower()
    settings = load_settings()
    paths = [p for chunk in pipelines for p in chunk.split(",") if p]
    if not paths and not settings.upstream_host:
        click.echo(
            "error: give --pipelines PATH, or set SELDON_UPSTREAM_HOST to take pipelines from the scheduler",
            err=True,
        )
        sys.exit(1)
    router = router_from_paths(paths, settings)
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        admin.check_port_free(settings.health_port)
        admin.check_data_dir(settings)
        # wait for Kafka (serving health meanwhile), create the topics and check joins' partition
        # counts here, where a failure is one line
        partitions = asyncio.run(startup.wait_for_kafka(settings, router))
    except DataflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except startup.Stopped as exc:
        click.echo(f"dataflow: {exc}", err=True)
        sys.exit(0)
    sys.exit(run_worker(settings, router, loglevel, watch=paths, partitions=partitions))
