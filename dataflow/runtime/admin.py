"""Topic administration with deadlines: reachability, creation and description.

Topics are created before the consumer subscribes, with the configured partition count, replication
factor and ``max.message.bytes`` on every topic (pipeline and model topics alike, case BR-06).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dataflow.config import Settings
from dataflow.errors import ConfigError, ConnectError, DataflowError
from dataflow.plan import Router, copartition_problems

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3


class TopicError(DataflowError):
    """Topics could not be created or described; the message names them."""


async def _admin(settings: Settings, deadline_s: float, *, retry: bool = True) -> AIOKafkaAdminClient:
    """A started admin client, or ConnectError after ``deadline_s`` seconds of trying (of one try
    when not ``retry``)."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        admin = AIOKafkaAdminClient(
            **settings.kafka_kwargs(),
            request_timeout_ms=max(1000, int(settings.topic_describe_timeout_ms * 5)),
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=max(0.5, end - time.monotonic()))
            return admin
        except Exception as exc:  # any connect failure is retried until the deadline
            last = exc
            await _close(admin)
            if not retry:
                break
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
    if isinstance(last, TimeoutError) or last is None:  # a port that takes the connection but never answers
        cause = f"no answer within {deadline_s:.3g} s"
    else:
        cause = str(last) or type(last).__name__
    raise ConnectError(f"cannot reach Kafka at {settings.bootstrap_servers}: {cause}")


async def _close(admin: AIOKafkaAdminClient) -> None:
    try:
        await asyncio.wait_for(admin.close(), timeout=5)
    except Exception:  # closing a half-started client may fail; nothing to keep
        log.debug("admin close failed", exc_info=True)


async def check_broker(settings: Settings, deadline_s: float) -> None:
    """One attempt to reach the broker, of at most ``deadline_s``; ConnectError with one clear line.

    aiokafka logs every failed attempt at ERROR; while we are only asking "is it there?" those lines
    are noise, and the one line that matters is ours.
    """
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        admin = await _admin(settings, deadline_s, retry=False)
        await _close(admin)
    finally:
        quiet.setLevel(level)


async def describe(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> dict[str, int]:
    """Partition counts of the topics that exist (missing ones are left out)."""
    names = sorted(set(topics))
    if not names:
        return {}
    result: list[dict[str, Any]] = await admin.describe_topics(names)
    # right after a create the metadata may still lack the topic or its partitions' leaders
    return {
        t["topic"]: len(t["partitions"])
        for t in result
        if t["error_code"] == 0 and t["partitions"] and all(p.get("leader", -1) >= 0 for p in t["partitions"])
    }


async def ensure_topics(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Create missing topics, then wait until all are visible; returns every topic's partition count.

    Existing topics keep their partition count; callers compare counts where it matters (joins).
    """
    names = sorted(set(topics))
    admin = await _admin(settings, settings.connect_timeout_s)
    try:
        counts = await describe(admin, names)
        missing = [n for n in names if n not in counts]
        if missing:
            configs = {"max.message.bytes": str(settings.max_message_size)}
            new = [
                NewTopic(n, settings.partitions, settings.replication_factor, topic_configs=configs)
                for n in missing
            ]
            try:
                response = await asyncio.wait_for(
                    admin.create_topics(new, timeout_ms=settings.topic_create_timeout_ms),
                    timeout=settings.topic_create_timeout_ms / 1000 + 5,
                )
            except Exception as exc:
                raise TopicError(f"kafka streams topic creation error Exception: {exc}") from exc
            failures = [
                f"{name}: error {code} {msg or ''}".strip()
                for name, code, *rest in response.topic_errors
                for msg in [rest[0] if rest else None]
                if code not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if failures:
                raise TopicError("kafka streams topic creation error Exception: " + "; ".join(failures))
            log.info("created topics: %s", ", ".join(missing))
        for _attempt in range(settings.topic_describe_retry_attempts):
            counts = await describe(admin, names)
            if len(counts) == len(names):
                return counts
            await asyncio.sleep(settings.topic_describe_retry_delay_ms / 1000)
        absent = ", ".join(n for n in names if n not in counts)
        raise TopicError(f"kafka streams topic creation error Exception: topics not visible: {absent}")
    finally:
        await _close(admin)


async def delete_topics(settings: Settings, topics: Iterable[str]) -> None:
    names = sorted(set(topics))
    if not names:
        return
    admin = await _admin(settings, settings.connect_timeout_s)
    try:
        await asyncio.wait_for(admin.delete_topics(names), timeout=settings.topic_create_timeout_ms / 1000)
    finally:
        await _close(admin)


def check_port_free(port: int, setting: str = "SELDON_HEALTH_SERVER_PORT") -> None:
    """Fail with one line, not a traceback from deep in the web server, when the port is taken."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            raise DataflowError(f"port {port} ({setting}) is not free: {exc.strerror}") from None


async def prepare(settings: Settings, router: Router) -> dict[str, int]:
    """Create every topic the pipelines use and refuse joins over topics of different partition counts."""
    topics = {*router.topics, settings.namer.dead_letter(), settings.namer.errors}
    counts = await ensure_topics(settings, topics)
    problems = copartition_problems(router, counts, settings.partitions)
    if problems:
        raise DataflowError("; ".join(problems))
    return counts


async def end_offsets(settings: Settings, partitions: dict[str, int]) -> dict[tuple[str, int], int]:
    """The current end offset of every partition of ``partitions`` (topic -> partition count)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(**settings.kafka_kwargs(), enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), timeout=settings.connect_timeout_s)
    try:
        tps = [TopicPartition(t, p) for t, n in sorted(partitions.items()) for p in range(n)]
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=settings.connect_timeout_s)
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=10)


def check_data_dir(settings: Settings) -> None:
    """The worker keeps local state under ``DATAFLOW_DATA_DIR``: fail at start, in one line, if it
    cannot be created or written."""
    from pathlib import Path

    path = Path(settings.data_dir) / settings.group_id
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"setting DATAFLOW_DATA_DIR: cannot use {path}: {exc.strerror or exc}") from None
