"""``dataflow worker`` with Faust's exactly-once mode switched on, for the evaluation in
``tests/experiments/eos_kill.py`` (docs/reliability.md). Not a supported mode of the project.

Faust's own transactional send keys a transaction by the *destination* topic's partition group, which
exists only for topics the app consumes; the engine writes to model and pipeline topics it does not
consume. So this wrapper does what Faust's design intends instead: every record the engine produces
while processing a consumed record goes into the transaction of that record's source partition
(``<app id>-<group>-<partition>``, the id Faust commits that partition's offsets under).
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any

from dataflow.runtime import app as app_module
from dataflow.runtime.engine import Engine, Record

SOURCE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("source", default=None)

_create_app = app_module.create_app
_process = Engine.process


def create_app(*args: Any, **kwargs: Any) -> Any:
    app = _create_app(*args, **kwargs)
    app.conf.processing_guarantee = "exactly_once"
    return app


async def process(self: Engine, record: Record) -> None:
    token = SOURCE.set((record.topic, record.partition))
    try:
        await _process(self, record)
    finally:
        SOURCE.reset(token)


async def send(
    self: Any, topic: str, key: Any, value: Any, partition: int, timestamp: Any, headers: Any
) -> Any:
    source = SOURCE.get()
    tid = None
    if source is not None:
        tid = f"{self.conf.id}-{self.assignor.group_for_topic(source[0])}-{source[1]}"
    return await self.producer.send(topic, key, value, partition, timestamp, headers, transactional_id=tid)


async def no_commit_on_revoke(self: Any, revoked: Any) -> None:
    """Offsets belong in the transactions; a plain commit would break exactly-once."""


app_module.create_app = create_app
Engine.process = process  # type: ignore[method-assign]
app_module.DataflowApp._send = send  # type: ignore[method-assign]
app_module.DataflowApp.commit_revoked = no_commit_on_revoke  # type: ignore[method-assign]

if __name__ == "__main__":
    from dataflow.cli.main import main
    from dataflow.runtime import worker as runtime_worker

    runtime_worker.create_app = create_app  # imported there by name
    sys.exit(main())
