"""Loading Pipeline YAML: every problem is reported as ``<file>:<line>: <field path>: <message>``.

Loading collects all problems of all files before failing, so a user fixes a folder in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dataflow.errors import SpecError
from dataflow.spec.models import Pipeline
from dataflow.spec.validate import validate_pipeline

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadedPipeline:
    """A valid pipeline and where it came from (``file`` or ``file#n`` for the n-th document).

    ``line`` is the line of its ``metadata.name``, for problems found across files (duplicate names).
    """

    pipeline: Pipeline
    source: str
    line: int | None = None


def _path_str(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Line (1-based) of the YAML node at ``loc``, or of the deepest ancestor that exists.

    A mapping entry is located by its key, so an unknown or invalid field points at its own line, not
    at the block under it. Keys may contain dots (tensorMap keys such as ``m.outputs.OUTPUT0``) while
    the field paths of semantic problems are dot-joined, so the longest run of path parts that names a
    key wins.
    """
    line = node.start_mark.line + 1 if node is not None else None
    parts = list(loc)
    i = 0
    while i < len(parts) and node is not None:
        part = parts[i]
        if isinstance(node, yaml.MappingNode):
            keys = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            end = next(
                (
                    j
                    for j in range(len(parts), i, -1)
                    if all(isinstance(c, str) for c in parts[i:j]) and ".".join(map(str, parts[i:j])) in keys
                ),
                None,
            )
            if end is None:
                break
            key_node, node = keys[".".join(map(str, parts[i:end]))]
            line = key_node.start_mark.line + 1
            i = end
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            i += 1
        else:
            break
    return line


def _split_path(path: str) -> list[int | str]:
    loc: list[int | str] = []
    for chunk in path.replace("]", "").split("."):
        name, *indices = chunk.split("[")
        if name:
            loc.append(name)
        loc.extend(int(i) for i in indices)
    return loc


def _pydantic_problems(exc: ValidationError) -> list[tuple[list[int | str], str]]:
    out = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, int | str)]
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "string_type" and err.get("input") is None:
            msg = "empty value (a list item or field with nothing after it)"
        elif isinstance(err.get("input"), str | int | float | bool):
            # the value itself, so the line says what to change (long ones cut)
            got = repr(err["input"])
            msg = f"{err['msg']} (got {got[:80] + '…' if len(got) > 80 else got})"
        else:
            msg = err["msg"]
        out.append((loc, msg))
    return out


def load_text(text: str, source: str) -> list[LoadedPipeline]:
    """Parse and validate every YAML document in ``text``. Raises SpecError listing all problems."""
    problems: list[str] = []
    loaded: list[LoadedPipeline] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: not valid YAML: {problem}"]) from None
    # A document with no content (a leading, trailing or doubled `---`) is no document, as for kubectl.
    docs = [n for n in nodes if n is not None and not _is_blank(n)]
    if not docs:
        raise SpecError([f"{source}: no pipeline in file (empty YAML)"])
    for index, node in enumerate(docs):
        label = source if len(docs) == 1 else f"{source}#{index + 1}"
        duplicates = list(_duplicate_keys(node))
        for dup in duplicates:
            problems.append(f"{source}:{dup.start_mark.line + 1}: duplicate key {dup.value!r} in one mapping")
        try:
            data: Any = _construct(node)
        except (yaml.YAMLError, TypeError, ValueError, RecursionError) as exc:
            mark = getattr(exc, "problem_mark", None) or node.start_mark
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            problems.append(f"{source}:{mark.line + 1}: cannot read this YAML: {problem}")
            continue
        if duplicates:
            continue
        if not isinstance(data, dict):
            line = node.start_mark.line + 1
            problems.append(f"{source}:{line}: expected a Pipeline mapping, got {type(data).__name__}")
            continue
        try:
            pipeline = Pipeline.model_validate(data)
        except ValidationError as exc:
            for loc, msg in _pydantic_problems(exc):
                line = _line_of(node, loc)
                problems.append(f"{source}:{line}: {_path_str(loc) or '(document)'}: {msg}")
            continue
        semantic = validate_pipeline(pipeline)
        for path, msg in semantic:
            line = _line_of(node, _split_path(path))
            problems.append(f"{source}:{line}: {path}: {msg}")
        if not semantic:
            loaded.append(LoadedPipeline(pipeline, label, _line_of(node, ["metadata", "name"])))
    if problems:
        raise SpecError(problems)
    return loaded


def _is_blank(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value == ""


def _duplicate_keys(root: yaml.Node) -> list[yaml.Node]:
    """Keys repeated within one mapping: YAML loaders keep the last silently, Kubernetes refuses them."""
    found: list[yaml.Node] = []
    stack = [root]
    seen_nodes: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes; visit each once
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        found.append(key)
                    keys.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return found


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def pipeline_files(paths: Iterable[str | Path]) -> list[Path]:
    """The YAML files named by ``paths`` (folders are searched recursively, sorted for a stable order)."""
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in YAML_SUFFIXES and p.is_file() and not _hidden(p.relative_to(path))
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            missing.append(f"{path}: no such file or folder")
    if missing:
        raise SpecError(missing)
    return files


def _hidden(relative: Path) -> bool:
    """Dot-files and dot-folders are skipped: a Kubernetes ConfigMap volume keeps a second copy of
    every file under ``..<timestamp>/``, which would otherwise define each pipeline twice."""
    return any(part.startswith(".") for part in relative.parts)


def load_paths(paths: Iterable[str | Path]) -> list[LoadedPipeline]:
    """Load every pipeline under ``paths``; pipeline names must be unique across all files."""
    problems: list[str] = []
    loaded: list[LoadedPipeline] = []
    seen: dict[str, str] = {}  # pipeline name -> "<file>:<line>" of its first definition
    for path in pipeline_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        try:
            items = load_text(text, str(path))
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        for item in items:
            where = f"{path}:{item.line}"
            first = seen.setdefault(item.pipeline.name, where)
            if first != where:
                problems.append(
                    f"{where}: metadata.name: pipeline {item.pipeline.name!r} is also defined at {first}"
                )
        loaded.extend(items)
    if problems:
        raise SpecError(problems)
    return loaded
