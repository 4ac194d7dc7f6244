"""``dataflow scheduler``: run the fake Seldon scheduler, for demos and manual tests of scheduler mode.

Start it, point workers at it (``SELDON_UPSTREAM_HOST``/``SELDON_UPSTREAM_PORT``), and watch their
replies: one line per reply, so a demo shows each engine's answer to each Create and Delete.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from dataflow.config import load_settings
from dataflow.errors import SpecError
from dataflow.proto import chainer_pb2 as pb
from dataflow.spec import Pipeline, load_paths
from dataflow.testing.scheduler import FakeScheduler
from dataflow.topics import TopicNamer


def _reply_line(reply: pb.PipelineUpdateStatusMessage) -> str:
    u = reply.update
    op = pb.PipelineUpdateMessage.PipelineOperation.Name(u.op)
    return f'reply: {op} {u.pipeline} v{u.version} success={reply.success} "{reply.reason}" from {u.stream}'


@click.command()
@click.option("--port", default=9008, show_default=True, type=click.IntRange(0, 65535), help="gRPC port.")
@click.option(
    "--host", default="0.0.0.0", show_default=True, help="Address to listen on (127.0.0.1 for local only)."
)
@click.option(
    "--pipelines",
    "pipelines",
    multiple=True,
    type=click.Path(),
    help="Pipeline YAML file or folder to create at start (repeatable, or comma-separated).",
)
def scheduler(port: int, host: str, pipelines: tuple[str, ...]) -> None:
    """Serve Seldon's Chainer control plane until SIGINT/SIGTERM, creating the pipelines given."""
    settings = load_settings()
    paths = [p for chunk in pipelines for p in chunk.split(",") if p]
    try:
        loaded = load_paths(paths) if paths else []
    except SpecError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        sys.exit(1)
    try:
        asyncio.run(_serve(settings.namer, host, port, [item.pipeline for item in loaded]))
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


async def _serve(namer: TopicNamer, host: str, port: int, pipelines: list[Pipeline]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeScheduler(namer, host, port, on_reply=lambda r: click.echo(_reply_line(r))) as fake:
        click.echo(f"scheduler listening on {host}:{fake.port} (topics {namer.base}.*)")
        for pipeline in pipelines:
            await fake.create(pipeline)
        await stop.wait()
