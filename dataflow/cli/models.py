"""``dataflow models``: serve stand-in models over Kafka, playing Seldon's model gateway.

With a broker, the engine and ``dataflow models serve`` a pipeline can be run end to end on a laptop,
without Kubernetes, Triton or MLServer; ``dataflow infer`` then plays the pipeline gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import click

from dataflow.config import Settings, load_settings
from dataflow.testing.gateway import ModelGateway, OffsetReset
from dataflow.testing.models import MODELS, Model, get_model

_QUIET = logging.CRITICAL  # aiokafka logs every failed connect attempt; we report the outcome once


@click.group("models")
def models() -> None:
    """Stand-in models (tfsimple1, add10, echo, …) served over Kafka like Seldon's model gateway."""


@models.command("list")
def list_models() -> None:
    """Print the model names `serve` accepts, with what each does."""
    width = max(len(name) for name in MODELS)
    for name, model in sorted(MODELS.items()):
        click.echo(f"{name:<{width}}  {model.summary}")
    click.echo(f"{'':<{width}}  also: sumdiff<any suffix>, big-<bytes>[k|m], slow-<ms>, ALIAS=KIND")


@models.command("serve")
@click.option(
    "--models",
    "names",
    envvar="DATAFLOW_MODELS",
    required=True,
    metavar="NAME[,NAME...]",
    help="Models to serve; see `dataflow models list`. ALIAS=KIND serves KIND under the name ALIAS.",
)
@click.option(
    "--group",
    "group_id",
    envvar="DATAFLOW_MODELS_GROUP",
    default=None,
    help="Consumer group [default: <consumer prefix>-<namespace>-<app id>-modelgateway].",
)
@click.option(
    "--offset-reset",
    type=click.Choice(["earliest", "latest"]),
    envvar="DATAFLOW_MODELS_OFFSET_RESET",
    default="earliest",
    show_default=True,
    help="Where a new group starts reading. Seldon uses latest; earliest loses nothing sent before "
    "the gateway joined.",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=0.1),
    envvar="DATAFLOW_MODELS_READY_TIMEOUT",
    default=60.0,
    show_default=True,
    help="Seconds to create topics, connect and get every partition assigned; reaching the broker is "
    "also bounded by DATAFLOW_CONNECT_TIMEOUT_SECONDS.",
)
def serve(names: str, group_id: str | None, offset_reset: str, ready_timeout: float) -> None:
    """Serve models until SIGINT or SIGTERM.

    Creates each model's inputs/outputs topics and the namespace errors topic if missing, answers every
    request on <prefix>.<ns>.model.<m>.inputs on ...outputs (same key, partition and headers), and
    writes failures to <prefix>.<ns>.errors.errors with header seldon-pipeline-errors. Prints one
    "models ready: ..." line when every partition is assigned. Kafka settings come from SELDON_* variables.
    """
    settings = load_settings()
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise click.UsageError("--models needs at least one name")
    resolved = [get_model(n) for n in wanted]  # UnknownModelError: one line, exit 1 (cli.main)
    _configure_logging(settings)
    reset: OffsetReset = "latest" if offset_reset == "latest" else "earliest"
    asyncio.run(_serve(settings, resolved, group_id, reset, ready_timeout))


async def _serve(
    settings: Settings, served: list[Model], group_id: str | None, reset: OffsetReset, timeout: float
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = ModelGateway(settings, served, group_id=group_id, offset_reset=reset)
    kafka_logger = logging.getLogger("aiokafka")
    configured_level = kafka_logger.level
    kafka_logger.setLevel(_QUIET)
    try:
        await gateway.start(timeout)
        await gateway.wait_ready(timeout)
        kafka_logger.setLevel(configured_level)
        click.echo(f"models ready: {', '.join(m.name for m in served)} on {settings.bootstrap_servers}")
        sys.stdout.flush()  # the line is what scripts wait for; don't leave it in a pipe buffer
        await gateway.run_until(stop)
    finally:
        await gateway.stop(timeout=10.0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def _configure_logging(settings: Settings) -> None:
    """Log to stderr at the SELDON_LOG_LEVEL_* levels; stdout is kept for the ready line."""
    logging.basicConfig(
        level=_level(settings.log_level_app),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(_level(settings.log_level_kafka))


def _level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.upper())
    return level if level is not None else logging.INFO
