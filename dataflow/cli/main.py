"""Entry point of the ``dataflow`` console script.

Commands are imported lazily so that ``dataflow validate`` does not pay for importing Faust.
User errors (``DataflowError``) print one line and exit 1; they never show a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from dataflow.errors import DataflowError

# command name -> "module:attribute" of its click command
_COMMANDS = {
    "worker": "dataflow.cli.worker:worker",
    "validate": "dataflow.cli.validate:validate",
    "describe": "dataflow.cli.describe:describe",
    "infer": "dataflow.cli.infer:infer",
    "models": "dataflow.cli.models:models",
    "scheduler": "dataflow.cli.scheduler:scheduler",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dataflow")
def cli() -> None:
    """Run Seldon Core 2 inference pipelines over Kafka."""


def main(argv: list[str] | None = None) -> None:
    try:
        # Without standalone mode click returns (not raises) the code given to ctx.exit().
        rc = cli.main(args=argv, prog_name="dataflow", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except DataflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
