"""``dataflow infer``: send one V2 JSON request to a pipeline over Kafka and print the answer.

It plays Seldon's pipeline gateway (see :mod:`dataflow.client`), so a pipeline can be tried without the
Go gateway. Exit codes tell a script what went wrong without parsing text.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import sys
from typing import Any, NoReturn

import click

from dataflow import client
from dataflow.config import load_settings
from dataflow.errors import CodecError, DataflowError
from dataflow.tensors import request_from_json

EXIT_BAD_INPUT = 1
EXIT_PIPELINE_ERROR = 2
EXIT_TIMEOUT = 3


@click.command("infer")
@click.argument("pipeline")
@click.argument("stdin_marker", required=False, metavar="[-]")
@click.option("--inputs", "inputs_json", envvar="DATAFLOW_INFER_INPUTS", metavar="JSON", help="Request body.")
@click.option(
    "--file",
    "-f",
    "file_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    envvar="DATAFLOW_INFER_FILE",
    help="Read the request body from a file ('-' for stdin).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.001),
    envvar="DATAFLOW_INFER_TIMEOUT",
    default=30.0,
    show_default=True,
    help="Seconds to wait for the answer (connection included).",
)
@click.option(
    "--header",
    "-H",
    "header_items",
    multiple=True,
    envvar="DATAFLOW_INFER_HEADERS",
    metavar="K=V",
    help="Extra Kafka header on the request, repeatable (x-request-id=ID sets the request id).",
)
def infer(
    pipeline: str,
    stdin_marker: str | None,
    inputs_json: str | None,
    file_path: str | None,
    timeout: float,
    header_items: tuple[str, ...],
) -> None:
    """Send a V2 inference request to PIPELINE and print the V2 JSON answer.

    The body comes from exactly one of --inputs JSON, --file F, or a trailing - (stdin). It is a V2
    request ({"inputs": [{"name", "datatype", "shape", "data"}]}) or just the list of inputs.

    \b
    Exit codes:
      0  answer printed on stdout
      1  bad input (JSON, tensors, headers) or setup problem (broker unreachable, pipeline not loaded)
      2  the pipeline answered with an error ("<step> : <message>" on stderr)
      3  no answer within --timeout
    """
    body = _read_body(stdin_marker, inputs_json, file_path)
    headers = [_parse_header(item) for item in header_items]
    try:
        request = request_from_json(body)
    except CodecError as exc:
        _fail(EXIT_BAD_INPUT, f"invalid request: {exc}")
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. a shape beyond int64
        _fail(EXIT_BAD_INPUT, f"invalid request: {type(exc).__name__}: {exc}")
    settings = load_settings()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # failures are reported once, below
    try:
        result = asyncio.run(client.infer(settings, pipeline, request, timeout=timeout, headers=headers))
    except client.PipelineError as exc:
        _fail(EXIT_PIPELINE_ERROR, str(exc))
    except client.InferTimeout as exc:
        _fail(EXIT_TIMEOUT, str(exc))
    except DataflowError:
        raise  # main() prints it as one line
    except Exception as exc:  # anything the client library raises (a record over the size limit...)
        _fail(EXIT_BAD_INPUT, f"request not sent: {type(exc).__name__}: {exc}")
    click.echo(_pretty(result.to_json()))


def _pretty(body: dict[str, Any]) -> str:
    """Indented JSON with flat lists (``shape``, ``data``) kept on one line, as people read them."""
    text = json.dumps(body, indent=2, default=_json_default)
    return _FLAT_LIST.sub(lambda m: "[" + ", ".join(_SCALAR.findall(m.group(0))) + "]", text)


_SCALAR_RE = r'-?[0-9][0-9.eE+-]*|true|false|null|NaN|-?Infinity|"(?:[^"\\]|\\.)*"'
_SCALAR = re.compile(_SCALAR_RE)
_FLAT_LIST = re.compile(rf"\[\s*(?:(?:{_SCALAR_RE})\s*,\s*)*(?:{_SCALAR_RE})\s*\]")


def _read_body(stdin_marker: str | None, inputs_json: str | None, file_path: str | None) -> dict[str, Any]:
    if stdin_marker not in (None, "-"):
        raise click.UsageError(
            f"unexpected argument {stdin_marker!r}: only '-' (read stdin) may follow PIPELINE"
        )
    sources = [s for s in (stdin_marker, inputs_json, file_path) if s is not None]
    if len(sources) != 1:
        _fail(EXIT_BAD_INPUT, "give the request exactly once: --inputs JSON, --file F, or - for stdin")
    if inputs_json is not None:
        text, origin = inputs_json, "--inputs"
    elif file_path in (None, "-"):
        text, origin = sys.stdin.read(), "stdin"
    else:
        try:
            with open(file_path, encoding="utf-8") as handle:
                text, origin = handle.read(), file_path
        except OSError as exc:
            _fail(EXIT_BAD_INPUT, f"cannot read {file_path}: {exc.strerror or exc}")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(EXIT_BAD_INPUT, f"{origin}: invalid JSON: {exc}")
    if isinstance(body, list):  # a bare list of inputs is the common shorthand
        body = {"inputs": body}
    if not isinstance(body, dict):
        _fail(EXIT_BAD_INPUT, f"{origin}: expected a JSON object with 'inputs', got {type(body).__name__}")
    return body


def _parse_header(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        _fail(EXIT_BAD_INPUT, f"--header {item!r}: expected K=V")
    # Seldon's gateway lower-cases header names before they become Kafka headers (spec §0.1).
    return name.strip().lower(), value


def _json_default(value: object) -> object:
    """BYTES that are not UTF-8 come back from the decoder as bytes; print them as base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def _fail(code: int, message: str) -> NoReturn:
    """One line on stderr, then exit with ``code``.

    SystemExit rather than ``click.exceptions.Exit``: ``cli.main`` runs click with
    ``standalone_mode=False``, where click *returns* an Exit's code instead of raising it, and the code
    would be lost.
    """
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
