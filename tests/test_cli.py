import subprocess
import sys

import click
from click.testing import CliRunner

from dsforge.cli import cli


def test_every_command_has_help():
    for name, cmd in cli.commands.items():
        assert cmd.help, name
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, name
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden and p.name not in ("help",):
                assert p.help or p.name in ("seed",), f"{name} --{p.name} has no help"


def test_help_is_light():
    code = ("import sys; from dsforge.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'vllm', 'transformers', 'datasets', 'polars', 'pyarrow') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out, out


def test_internal_errors_have_no_traceback_unless_debug(tmp_path, monkeypatch):
    import dsforge.validate as v

    monkeypatch.setattr(v, "validate_path", lambda *a, **k: 1 / 0)
    f = tmp_path / "a.jsonl"
    f.write_text("{}\n")
    r = CliRunner().invoke(cli, ["validate", str(f)])
    assert r.exit_code == 1 and "internal error: ZeroDivisionError" in r.output and "DSFORGE_DEBUG" in r.output
    monkeypatch.setenv("DSFORGE_DEBUG", "1")
    r = CliRunner().invoke(cli, ["validate", str(f)])
    assert isinstance(r.exception, ZeroDivisionError)


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "dsforge", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "dsforge" in r.stdout
