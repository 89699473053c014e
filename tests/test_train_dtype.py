"""`dsforge train` on a CPU chooses its compute dtype: float32 where bf16 would be emulated (no
avx512_bf16/amx_bf16; arm: no bf16), bfloat16 where the CPU has it, the user's bf16/fp16 always;
it says which and why, records it, and LLaMA-Factory loads the weights in that dtype."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.hardware import cpu_flags, has_gpu, native_bf16
from dsforge.train import cpu_precision, user_precision

AVX2_ONLY = cpu_flags("flags\t\t: fpu sse2 avx avx2 fma\n")
AVX512_BF16 = cpu_flags("flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16\n")


def test_without_native_bf16_the_cpu_trains_in_float32():
    keys, dtype, why = cpu_precision({}, native_bf16(AVX2_ONLY, "x86_64"))
    assert (keys, dtype) == ({"bf16": False, "fp16": False}, "float32")
    assert why == "CPU without native bf16: no avx512_bf16/amx_bf16"


def test_with_native_bf16_the_cpu_trains_in_bfloat16():
    keys, dtype, why = cpu_precision({}, native_bf16(AVX512_BF16, "x86_64"))
    assert (keys, dtype, why) == ({"bf16": True, "fp16": False, "use_cpu": True}, "bfloat16", "CPU has avx512_bf16")


@pytest.mark.parametrize("sets, unset, want", [
    ({"bf16": True}, (), ({"use_cpu": True}, "bfloat16")),
    ({"fp16": True}, (), ({}, "float16")),
    ({"bf16": False}, (), ({"bf16": False, "fp16": False}, "float32")),
    ({"bf16": None}, (), ({"bf16": False, "fp16": False}, "float32")),
    ({}, ("bf16",), ({"bf16": False, "fp16": False}, "float32")),
])
def test_the_users_choice_wins_over_the_hardware(sets, unset, want):
    for flags in (AVX2_ONLY, AVX512_BF16):
        keys, dtype, why = cpu_precision(user_precision("lora", sets, unset), native_bf16(flags, "x86_64"))
        assert (keys, dtype) == want and "set by the user" in why


def test_builtin_recipes_bf16_is_not_a_users_choice(tmp_path):
    assert user_precision("lora", {}) == {}
    own = tmp_path / "mine.yaml"
    own.write_text("finetuning_type: lora\nbf16: true\n")
    assert user_precision(str(own), {}) == {"bf16": True}


@pytest.fixture(scope="module")
def data_dir(sft_data_dir):
    return sft_data_dir


@pytest.mark.skipif(has_gpu(), reason="the dtype choice is for CPU-only machines")
def test_dry_run_says_the_dtype_and_records_it(data_dir, tiny_model, lf_py):
    """A real dry run (LLaMA-Factory's own argument parser accepts the choice) on this machine's CPU."""
    from dsforge.train import train

    lines = []
    res = train("sft", tiny_model, ["s"], str(data_dir), dry_run=True, lf_python=lf_py, log=lines.append,
                echo=lambda m: None)
    native, why = native_bf16()
    want = "bfloat16" if native else "float32"
    assert f"compute dtype: {want} ({why})" in lines, lines
    assert res["config"]["bf16"] is native and res["config"]["fp16"] is False
    assert res["manifest"]["precision"] == {"compute_dtype": want, "why": why, "weights_loaded_in": want}
    r = CliRunner().invoke(cli, ["train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", str(data_dir),
                                 "--dry-run", "--lf-python", lf_py, "--set", "bf16=false"])
    assert r.exit_code == 0, r.output
    assert "compute dtype: float32 (bf16/fp16: false set by the user)" in r.output
