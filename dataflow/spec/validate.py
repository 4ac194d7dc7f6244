"""Semantic checks of a Pipeline beyond its schema: references, names and cycles (spec §3.2).

Each problem is a ``(field path, message)`` pair so the loader can prefix file and line.
"""

from __future__ import annotations

import re

from dataflow.spec.models import Pipeline
from dataflow.spec.refs import Ref, RefError, parse_external_ref, parse_step_ref

Problem = tuple[str, str]

# Names end up inside dot-separated topic names and references, so they cannot contain dots.
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")


# Kafka topic names are at most 249 characters; `<prefix>.<namespace>.pipeline.<name>.outputs` must fit.
MAX_NAME = 160


def _name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"name is {len(name)} characters long; at most {MAX_NAME} fit in a Kafka topic name"
    if not NAME_RE.match(name):
        return f"invalid name {name!r}: use letters, digits, '-' and '_' (no dots), starting and ending alphanumeric"
    return None


def validate_pipeline(p: Pipeline) -> list[Problem]:
    problems: list[Problem] = []
    pname = p.name
    if (msg := _name_problem(pname)) is not None:
        problems.append(("metadata.name", msg))

    steps = p.spec.steps
    if not steps:
        problems.append(("spec.steps", "a pipeline needs at least one step"))
    names: set[str] = set()
    for i, step in enumerate(steps):
        where = f"spec.steps[{i}].name"
        if (msg := _name_problem(step.name)) is not None:
            problems.append((where, msg))
        if step.name == pname:
            problems.append((where, f"step {step.name!r} has the same name as the pipeline"))
        if step.name in names:
            problems.append((where, f"duplicate step name {step.name!r}"))
        names.add(step.name)

    def check_step_refs(path: str, refs: list[str] | None, *, kind: str) -> list[Ref]:
        if refs is None:
            return []
        if not refs:
            problems.append((path, f"{kind} must not be empty (omit the field instead)"))
            return []
        parsed: list[Ref] = []
        for j, text in enumerate(refs):
            where = f"{path}[{j}]"
            if text is None or (isinstance(text, str) and not text.strip()):
                problems.append((where, "empty reference"))
                continue
            try:
                ref = parse_step_ref(text, pname)
            except RefError as exc:
                problems.append((where, str(exc)))
                continue
            if ref.is_pipeline and ref.io != "inputs":
                problems.append((where, f"{text!r}: a step can read the pipeline's inputs, not its outputs"))
            elif not ref.is_pipeline and ref.owner not in names:
                problems.append((where, f"{text!r}: unknown step {ref.owner!r}"))
            else:
                parsed.append(ref)
        return parsed

    def check_tensor_map(path: str, mapping: dict[str, str] | None, *, external: bool) -> None:
        for key, value in (mapping or {}).items():
            where = f"{path}.{key}"
            if not isinstance(value, str) or not value:
                problems.append((where, "the new tensor name must be a non-empty string"))
            try:
                ref = parse_external_ref(key) if external else parse_step_ref(key, pname)
            except RefError as exc:
                problems.append((where, str(exc)))
                continue
            if ref.tensor is None:
                problems.append(
                    (where, f"{key!r}: a tensorMap key must name a tensor (…<inputs|outputs>.<tensor>)")
                )
            elif not external and not ref.is_pipeline and ref.owner not in names:
                problems.append((where, f"{key!r}: unknown step {ref.owner!r}"))

    graph: dict[str, set[str]] = {}
    for i, step in enumerate(steps):
        base = f"spec.steps[{i}]"
        refs = check_step_refs(f"{base}.inputs", step.inputs, kind="inputs")
        refs += check_step_refs(f"{base}.triggers", step.triggers, kind="triggers")
        check_tensor_map(f"{base}.tensorMap", step.tensor_map, external=False)
        graph.setdefault(step.name, set()).update(r.owner for r in refs if not r.is_pipeline)

    if p.spec.output is not None:
        out = p.spec.output
        if not out.steps:
            problems.append(("spec.output.steps", "the output must name at least one step"))
        check_step_refs("spec.output.steps", out.steps or None, kind="output steps")
        check_tensor_map("spec.output.tensorMap", out.tensor_map, external=False)

    if p.spec.input is not None:
        inp = p.spec.input
        if not inp.external_inputs:
            problems.append(("spec.input.externalInputs", "must list at least one upstream reference"))
        for field, refs_list in (
            ("externalInputs", inp.external_inputs),
            ("externalTriggers", inp.external_triggers),
        ):
            if refs_list is not None and not refs_list and field == "externalTriggers":
                problems.append((f"spec.input.{field}", "must not be empty (omit the field instead)"))
            for j, text in enumerate(refs_list or []):
                where = f"spec.input.{field}[{j}]"
                if text is None or not str(text).strip():
                    problems.append((where, "empty reference"))
                    continue
                try:
                    ref = parse_external_ref(text)
                except RefError as exc:
                    problems.append((where, str(exc)))
                    continue
                if ref.source_pipeline == pname:
                    problems.append(
                        (where, f"{text!r}: a pipeline cannot take its own topics as external input")
                    )
        check_tensor_map("spec.input.tensorMap", inp.tensor_map, external=True)

    if not p.spec.allow_cycles:
        cycle = find_cycle(graph)
        if cycle:
            problems.append(
                ("spec.steps", f"cycle {' -> '.join(cycle)}; set spec.allowCycles: true to allow it")
            )
    return problems


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``step -> steps it reads from`` as a list of names in data-flow order, or None.

    Iterative, so a chain of thousands of steps does not exhaust Python's recursion limit.
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if color[start] != white:
            continue
        path: list[str] = [start]
        iters = [iter(sorted(graph.get(start, ())))]
        color[start] = grey
        while iters:
            dep = next(iters[-1], None)
            if dep is None:
                color[path.pop()] = black
                iters.pop()
                continue
            state = color.get(dep, black)
            if state == grey:
                loop = [*path[path.index(dep) :], dep]
                return list(reversed(loop))
            if state == white:
                color[dep] = grey
                path.append(dep)
                iters.append(iter(sorted(graph.get(dep, ()))))
    return None
