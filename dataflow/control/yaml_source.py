"""YAML mode: pipelines from files, compiled exactly as the scheduler would compile them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import orjson

from dataflow.compile import compile_pipeline
from dataflow.config import Settings
from dataflow.errors import SpecError
from dataflow.plan import PipelinePlan, PlanError, Router, plan_pipeline
from dataflow.spec import Pipeline, load_paths
from dataflow.spec.load import pipeline_files

# Step features the runtime does not execute yet; refusing them beats running them wrongly.
UNSUPPORTED = "a batched step cannot also wait for triggers"


def plans_from_paths(
    paths: Iterable[str | Path], settings: Settings, *, runnable: bool = True
) -> list[PipelinePlan]:
    """Load, validate, compile and plan every pipeline under ``paths`` (SpecError lists all problems).

    ``runnable`` also refuses step features this runtime cannot execute yet; ``validate`` leaves it off,
    since such a pipeline is still a valid Seldon pipeline.
    """
    loaded = load_paths(paths)
    plans: list[PipelinePlan] = []
    problems: list[str] = []
    for item in loaded:
        update = compile_pipeline(
            item.pipeline, settings.namer, version=_version(item.pipeline), uid=content_uid(item.pipeline)
        )
        try:
            plan = plan_pipeline(update, settings.join_window_ms)
        except PlanError as exc:
            problems.append(f"{item.source}: {exc}")
            continue
        for step in plan.steps:
            if runnable and step.batch and step.triggers:
                problems.append(
                    f"{item.source}: pipeline {step.pipeline!r} step {step.step_id!r}: not supported yet ({UNSUPPORTED})"
                )
        plans.append(plan)
    if problems:
        raise SpecError(problems)
    return plans


def content_uid(pipeline: Pipeline) -> str:
    """The uid of a pipeline version in YAML mode: a digest of its name and what its spec means.

    Every worker reading the same pipeline derives the same uid, and a changed pipeline is a new
    version (new uid), as a new version is in Seldon's scheduler. Join and trigger state is keyed by
    uid, so workers sharing partitions must agree on it even when their files list the same steps
    (or triggers, or tensorMap entries) in other orders (case BR-24): those orders mean nothing and
    are sorted away. Orders that do mean something stay: a step's ``inputs`` and the output's
    ``steps`` are the order in which joined tensors are merged.
    """
    spec = pipeline.spec.model_dump(mode="json", by_alias=True)
    spec["steps"] = sorted(spec["steps"], key=lambda step: str(step["name"]))
    for step in spec["steps"]:
        if step.get("triggers"):
            step["triggers"] = sorted(step["triggers"])
    if (spec.get("input") or {}).get("externalTriggers"):
        spec["input"]["externalTriggers"] = sorted(spec["input"]["externalTriggers"])
    canonical = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(pipeline.name.encode() + b"\0" + canonical).hexdigest()[:20]


def _version(pipeline: Pipeline) -> int:
    """``metadata.generation`` when the resource carries one (exported from a cluster), else 1."""
    generation = (pipeline.metadata.model_extra or {}).get("generation")
    return generation if isinstance(generation, int) and generation > 0 else 1


def fingerprint(paths: Iterable[str | Path]) -> tuple[tuple[str, int, int], ...]:
    """What the files under ``paths`` look like now (name, size, mtime): cheap to poll each second."""
    try:
        files = pipeline_files(paths)
    except SpecError:
        return ()
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def router_from_paths(paths: Iterable[str | Path], settings: Settings) -> Router:
    paths = list(paths)
    plans = plans_from_paths(paths, settings) if pipeline_files(paths) else []
    return Router.build(plans)
