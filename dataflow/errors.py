"""One root exception, and one subclass per layer, so callers can tell user errors from engine faults.

Every error carries the context a reader needs to find the problem (file and field, topic, partition,
offset) in its message; nothing here formats tracebacks for users.
"""

from __future__ import annotations


class DataflowError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(DataflowError):
    """A setting (environment variable or flag) has a value the engine cannot use."""


class SpecError(DataflowError):
    """A pipeline definition is invalid. ``problems`` lists one line per fault, each naming its place."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class CodecError(DataflowError):
    """A payload could not be decoded, encoded or converted (bad protobuf, bad datatype, bad JSON)."""


class ConnectError(DataflowError):
    """The Kafka broker could not be reached within the deadline."""
