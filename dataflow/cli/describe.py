"""``dataflow describe PATH...``: print what the worker would run, offline (topics, steps, chains)."""

from __future__ import annotations

import click


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def describe(paths: tuple[str, ...]) -> None:
    """Show each pipeline's steps: sources (tensors, renames, chain kind), join and sink."""
    from dataflow.config import load_settings
    from dataflow.control.yaml_source import plans_from_paths

    for plan in plans_from_paths(paths, load_settings(), runnable=False):
        u = plan.update
        click.echo(f"pipeline {u.pipeline} v{u.version} uid {u.uid}")
        for step in plan.steps:
            join = f" join={step.join.name.lower()} window={step.window_ms}ms" if step.is_joiner else ""
            click.echo(f"  step {step.step_id} -> {step.sink}{join}")
            for s in step.sources:
                tensors = ",".join(sorted(s.desired)) if s.desired else "*"
                click.echo(
                    f"    from {s.topic} [{tensors}] ({s.kind.value}, header pipeline={s.pipeline_name})"
                )
                for src, dst in sorted(s.renames.items()):
                    click.echo(f"      rename {src} -> {dst}")
            for t in step.triggers:
                tensors = ",".join(sorted(t.desired)) if t.desired else "*"
                click.echo(f"    trigger {t.topic} [{tensors}]")
