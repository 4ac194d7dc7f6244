"""``dataflow validate PATH...``: check pipeline files without a broker."""

from __future__ import annotations

import sys

import click

from dataflow.errors import SpecError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Exit 0 when every pipeline under PATHS is valid; else print one line per problem and exit 1."""
    from dataflow.config import load_settings
    from dataflow.control.yaml_source import plans_from_paths

    try:
        plans = plans_from_paths(paths, load_settings(), runnable=False)
    except SpecError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        sys.exit(1)
    if not plans:
        click.echo(f"{', '.join(paths)}: no pipeline files found", err=True)
        sys.exit(1)
    for plan in plans:
        models = sum(1 for s in plan.steps if not s.step_id.startswith("("))
        click.echo(f"ok: {plan.update.pipeline} ({models} model step{'s' if models != 1 else ''})")
