"""Values the CLI refuses are refused in a recipe too, naming the recipe's field (one config model per stage)."""

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.stages import EvalConfig, FieldError, JudgeConfig, PairsConfig, SampleConfig

BAD = [
    (PairsConfig, {"min_margin": float("inf")}, "min_margin"),
    (PairsConfig, {"min_margin": float("nan")}, "min_margin"),
    (SampleConfig, {"temps": [0.7, float("nan")]}, "temps"),
    (SampleConfig, {"temps": [-1.0]}, "temps"),
    (SampleConfig, {"top_p": float("inf")}, "top_p"),
    (JudgeConfig, {"verifier": "regex:("}, "verifier"),
    (JudgeConfig, {"verifier": "nope"}, "verifier"),
    (JudgeConfig, {"verifier": "numeric:rel=x"}, "verifier"),
    (EvalConfig, {"verifier": "python:only_module"}, "verifier"),
]


@pytest.mark.parametrize("model,values,field", BAD)
def test_library_refuses_naming_the_field(model, values, field):
    with pytest.raises(FieldError) as err:
        model.build(**values)
    assert field in str(err.value) and "Value error" not in str(err.value)


@pytest.mark.parametrize("stage,key,value", [
    ("pairs", "min_margin", ".inf"), ("pairs", "min_margin", ".nan"), ("sample", "temps", "[.nan]"),
    ("sample", "temps", "[-1.0]"), ("judge", "verifier", "'regex:('"), ("judge", "verifier", "nope"),
])
def test_recipe_refuses_at_load_naming_the_stage_field(tmp_path, stage, key, value):
    (tmp_path / "p.jsonl").write_text('{"instruction": "1+1?", "reference": "2"}\n')
    stages = {"sample": "  - sample: {%s}\n", "judge": "  - judge: {%s}\n", "pairs": "  - pairs: {%s}\n"}
    body = "".join(stages[s] % (f"{key}: {value}" if s == stage else "") for s in ("sample", "judge", "pairs"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninputs: [p.jsonl]\nmodels: {{judge: j}}\nstages:\n{body}")
    r = CliRunner().invoke(cli, ["run", str(recipe)])
    assert r.exit_code == 1, r.output        # a recipe problem is a ConfigError (exit 1), as an unknown key
    idx = ("sample", "judge", "pairs").index(stage)
    assert f"stages[{idx}].{stage}.{key}" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()     # refused before any stage ran
