"""The shape of the package: no import loops among dsforge's modules (lazy imports inside functions
count too: a loop that only closes at run time is still a loop to read)."""

import ast
import graphlib
from pathlib import Path

import dsforge


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, relative imports resolved; `from p import m`
    points at the submodule p.m when there is one, else at p (its __init__)."""
    root = package_dir.parent
    files = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:   # dsforge.x.func -> dsforge.x; outside modules vanish
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph` (its modules in order, the first repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def test_the_cycle_finder_finds_a_loop_through_a_lazy_relative_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import os\nfrom .. import sub\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.sub"} and cycle(graph) is None
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    assert set(cycle(import_graph(pkg))) == {"pkg.a", "pkg.sub.b"}


def test_no_import_loops_in_dsforge():
    graph = import_graph(Path(dsforge.__file__).parent)
    assert "dsforge.judge.core" in graph and graph["dsforge.judge.audit"] >= {"dsforge.judge.core"}
    loop = cycle(graph)
    assert loop is None, "import loop: " + " -> ".join(loop)


# ---------------------------------------------------------------- each stage option is declared once

# Options of a stage command that are about this invocation (inputs, outputs, engine connection, sharding),
# not the stage's config: they have no recipe key (the runner sets them).
INVOCATION = {
    "convert": {"out", "dedup_mode", "no_dedup", "as_json"},   # --dedup/--no-dedup: one spelling of dedup+near_dedup
    "sample": {"out", "engine_opts", "base_url", "api_key", "maps", "shard", "skip_bad", "overwrite", "ray_address",
               "ray_workers"},
    "pairs": {"out", "kto_out"},
    "register": set(),
    "train": {"datasets", "dataset_dir", "output_dir", "dry_run"},
}
INVOCATION["judge"] = {"out", "engine_opts", "api_key", "cache_path", "price", "ray_address", "ray_workers"}
SHARED = {"base_url"}   # a field with cli=False whose option is cli.gen.engine_flags' --base-url (sample, judge, eval)
GENERATED = tuple(INVOCATION)


def test_each_stage_option_is_declared_once_in_its_config_model():
    """Every option of convert/sample/judge/pairs/register/train is either generated from one field of the stage's
    config model (same flags and help as options_from makes) or an invocation option; every CLI-visible
    field has its option."""
    import click

    from dsforge.cli import cli
    from dsforge.cli.options import option_for
    from dsforge.stages import STAGE_CONFIGS, cli_of

    for kind in GENERATED:
        model, cmd = STAGE_CONFIGS[kind], cli.commands[kind]
        options = {p.name: p for p in cmd.params if isinstance(p, click.Option) and p.name != "help"}
        for name, p in options.items():
            if name in SHARED and name in model.model_fields:
                continue
            if name in INVOCATION[kind]:
                assert name not in model.model_fields, f"{kind} {p.opts[0]} shadows the field {name}"
                continue
            assert name in model.model_fields, f"{kind} {p.opts[0]} is declared outside {model.__name__}"
            made = option_for(model, name)
            assert (p.opts, p.secondary_opts, p.help) == (made.opts, made.secondary_opts, made.help), (kind, name)
        visible = {n for n in model.model_fields if cli_of(model, n).cli}
        arguments = {p.name for p in cmd.params if isinstance(p, click.Argument)}
        assert visible <= set(options) | arguments, f"{kind}: fields without an option: {visible - set(options)}"


def test_every_recipe_key_is_a_field_of_the_stage_model_and_the_runner_has_each_stage():
    from dsforge.recipe import Stage
    from dsforge.run import STAGES
    from dsforge.stages import STAGE_CONFIGS, STAGE_NAMES

    for kind, model in STAGE_CONFIGS.items():
        field = Stage.model_fields["register_" if kind == "register" else kind]
        entry = next(a for a in field.annotation.__args__ if a is not type(None))
        assert issubclass(entry, model), f"the recipe's {kind} entry is {entry.__name__}, not {model.__name__}"
    assert tuple(STAGES) == STAGE_NAMES == tuple(STAGE_CONFIGS)


def test_one_mapping_spells_a_field_for_the_cli_and_the_recipe(tmp_path):
    import yaml
    from click.testing import CliRunner

    from dsforge.cli import cli
    from dsforge.errors import ConfigError
    from dsforge.recipe import load_recipe
    from dsforge.stages import ConvertConfig, PairsConfig, SampleConfig, field_of_flag, flag_of, recipe_key

    assert flag_of(PairsConfig, "min_margin") == "--min-margin" and flag_of(SampleConfig, "logprobs") == "--no-logprobs"
    assert field_of_flag(ConvertConfig, "--map") == "mapping" and recipe_key(ConvertConfig, "mapping") == "map"
    r = CliRunner().invoke(cli, ["pairs", "x.jsonl", "--min-margin", "-1", "-o", str(tmp_path / "p.jsonl")])
    assert r.exit_code == 2 and "--min-margin" in r.output, r.output
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "inputs": ["a"], "stages": [
        {"sample": {}}, {"judge": {"base_url": "http://h/v1"}}, {"pairs": {"min_margin": -1}}],
        "models": {"judge": "j"}}))
    try:
        load_recipe(str(p))
        raise AssertionError("a negative min_margin was accepted")
    except ConfigError as err:
        assert "stages[2].pairs.min_margin: " in err.message, err.message
