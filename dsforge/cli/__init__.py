"""dsforge's command line. Each command parses options and makes one library call.

Errors: DsforgeError subclasses become one message + hint and their exit code; OSError (missing
path, directory for a file, full disk, read-only, permission) becomes one message naming the path
(errors.os_error: exit 2 for a wrong path, 1 for the machine); a closed output pipe (`| head`)
ends quietly with 141; Ctrl-C exits 130 and SIGTERM 143, after every child process is stopped
(dsforge.procs); anything else is a bug and shows its traceback only with DSFORGE_DEBUG=1.
Messages pass through redact_text, so no URL credential reaches the console.
"""

from __future__ import annotations

import os
import sys

import click

from dsforge import __version__
from dsforge.errors import DsforgeError, os_error, redact_text

# Output piped into a reader that stopped early (`dsforge ... | head`): end quietly with the
# shell's SIGPIPE status 141 (128 + 13), like coreutils, so `set -o pipefail` still tells a cut
# output from a complete one.
EXIT_BROKEN_PIPE = 141


def quiet_broken_pipe() -> None:
    """Point stdout at /dev/null (so the interpreter's final flush cannot fail again, as the Python
    docs on SIGPIPE recommend) and exit 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)


class DsforgeGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            quiet_broken_pipe()
        except (DsforgeError, OSError) as err:
            if os.environ.get("DSFORGE_DEBUG"):
                raise
            if isinstance(err, OSError):   # the user's path or the machine (disk full, read-only, ...)
                err = os_error(err)
            click.echo(f"Error: {redact_text(err.message)}", err=True)
            if err.hint:
                click.echo(f"  hint: {redact_text(err.hint)}", err=True)
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
            click.echo(f"Error: internal error: {type(err).__name__}: {redact_text(str(err))}", err=True)
            click.echo("  hint: this is a dsforge bug; rerun with DSFORGE_DEBUG=1 for the traceback and report it",
                       err=True)
            ctx.exit(1)


@click.group(cls=DsforgeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dsforge")
@click.option("-v", "--verbose", is_flag=True,
              help="Show vLLM's, transformers' and LLaMA-Factory's own output on the console (default: in a log file).")
def cli(verbose):
    """Build, check and register training data for LLaMA-Factory."""
    from dsforge import logs

    logs.set_verbose(verbose or logs.verbose())


from dsforge.cli import data as _data  # noqa: E402  (registers commands)
from dsforge.cli import gen as _gen  # noqa: E402
from dsforge.cli import pref as _pref  # noqa: E402
from dsforge.cli import review as _review  # noqa: E402
from dsforge.cli import trainer as _trainer  # noqa: E402
from dsforge.cli import run as _run  # noqa: E402
from dsforge.cli import quality as _quality  # noqa: E402
from dsforge.cli import evaluate as _evaluate  # noqa: E402
from dsforge.cli import tasks as _tasks  # noqa: E402

_data.add_commands(cli)
_gen.add_commands(cli)
_pref.add_commands(cli)
_review.add_commands(cli)
_trainer.add_commands(cli)
_run.add_commands(cli)
_quality.add_commands(cli)
_evaluate.add_commands(cli)
_tasks.add_commands(cli)


def main() -> None:
    from dsforge import procs

    procs.handle_sigterm()   # SIGTERM takes Ctrl-C's clean-up path; every child process is stopped
    try:
        with procs.stopping_children():
            cli(prog_name="dsforge")
    finally:
        try:   # output buffered until exit can still meet a closed pipe
            sys.stdout.flush()
        except BrokenPipeError:
            quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
