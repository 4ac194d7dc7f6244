"""YAML mode: pipelines from files, compiled exactly as the scheduler would compile them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dataflow.compile import compile_pipeline
from dataflow.config import Settings
from dataflow.errors import SpecError
from dataflow.plan import PipelinePlan, PlanError, Router, plan_pipeline
from dataflow.spec import load_paths

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
        update = compile_pipeline(item.pipeline, settings.namer)
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


def router_from_paths(paths: Iterable[str | Path], settings: Settings) -> Router:
    plans = plans_from_paths(paths, settings)
    if not plans:
        raise SpecError([f"{', '.join(str(p) for p in paths)}: no pipeline files found"])
    return Router.build(plans)
