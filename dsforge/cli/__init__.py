"""dsforge's command line. Each command parses options and makes one library call.

Errors: DsforgeError subclasses become one message + hint and their exit code; Ctrl-C exits 130;
anything else is a bug and shows its traceback only with DSFORGE_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import click

from dsforge import __version__
from dsforge.errors import DsforgeError


class DsforgeGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DsforgeError as err:
            if os.environ.get("DSFORGE_DEBUG"):
                raise
            click.echo(f"Error: {err.message}", err=True)
            if err.hint:
                click.echo(f"  hint: {err.hint}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            if os.environ.get("DSFORGE_DEBUG"):
                raise
            click.echo("Interrupted: nothing half-written was left behind.", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - last line of defence for bugs
            if os.environ.get("DSFORGE_DEBUG"):
                raise
            click.echo(f"Error: internal error: {type(err).__name__}: {err}", err=True)
            click.echo("  hint: this is a dsforge bug; rerun with DSFORGE_DEBUG=1 for the traceback and report it",
                       err=True)
            ctx.exit(1)


@click.group(cls=DsforgeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dsforge")
def cli():
    """Build, check and register training data for LLaMA-Factory."""


from dsforge.cli import data as _data  # noqa: E402  (registers commands)
from dsforge.cli import gen as _gen  # noqa: E402
from dsforge.cli import pref as _pref  # noqa: E402
from dsforge.cli import trainer as _trainer  # noqa: E402
from dsforge.cli import pipeline as _pipeline  # noqa: E402

_data.add_commands(cli)
_gen.add_commands(cli)
_pref.add_commands(cli)
_trainer.add_commands(cli)
_pipeline.add_commands(cli)


def main() -> None:
    cli(prog_name="dsforge")


if __name__ == "__main__":
    sys.exit(main())
