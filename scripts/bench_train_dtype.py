"""Training step time on this CPU in float32 vs bfloat16: a few real LLaMA-Factory steps of the embedded
model (SmolLM2-135M-Instruct, LoRA) through `dsforge train`, once per dtype, side by side.

    python scripts/bench_train_dtype.py [--stage dpo|sft] [--steps 2] [--batch 4] [--cutoff 200]

Each run trains `--steps` steps on the same generated data (a DPO step is a forward+backward pass of
chosen and rejected through the policy and a forward pass of the reference model). The time per step
comes from LLaMA-Factory's own trainer_state.json (train_runtime / steps: model loading and data
preprocessing excluded). Prints seconds per step in each dtype, the ratio bf16/fp32, which dtype
`dsforge train` picks here by default (and why), and the weights' dtype LLaMA-Factory reported loading.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def make_data(d: Path, stage: str, rows: int) -> str:
    """A registered dataset in `d` for `stage` (ranking rows for dpo, instruction/output rows for sft)."""
    from dsforge.register import register

    if stage == "dpo":
        data = [{"instruction": f"What is {i} plus {i + 3}? Explain.",
                 "chosen": f"{i} plus {i + 3} is {2 * i + 3}, because adding {i + 3} to {i} gives {2 * i + 3}. " * 3,
                 "rejected": f"I believe {i} plus {i + 3} is {2 * i + 5}; that is my answer, more or less. " * 3}
                for i in range(rows)]
    else:
        data = [{"instruction": f"What is {i} plus {i + 3}? Explain.",
                 "output": f"{i} plus {i + 3} is {2 * i + 3}, because adding {i + 3} to {i} gives {2 * i + 3}. " * 3}
                for i in range(rows)]
    (d / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    register(str(d / "data.jsonl"), "bench", str(d))
    return "bench"


def one_run(stage: str, model: str, d: Path, dtype: str, args) -> dict:
    """Train `args.steps` steps in `dtype` (bf16=true/false); returns seconds per step and the loaded dtype."""
    from dsforge.train import train

    out = d / f"out-{dtype}"
    sets = {"bf16": dtype == "bfloat16", "max_steps": args.steps, "per_device_train_batch_size": args.batch,
            "gradient_accumulation_steps": 1, "cutoff_len": args.cutoff, "logging_steps": 1, "save_steps": 10**6,
            "preprocessing_num_workers": 1, "plot_loss": False, "warmup_steps": 0}
    lines: list[str] = []
    res = train(stage, model, ["bench"], str(d), sets=sets, output_dir=str(out), log=lambda m: None,
                echo=lines.append)
    if res["exit_code"]:
        raise SystemExit(f"{dtype}: llamafactory-cli exited {res['exit_code']}: {res.get('last_error')} "
                         f"(log: {out}/dsforge_train.log)")
    state = json.loads((out / "trainer_state.json").read_text())
    runtime = next(h["train_runtime"] for h in state["log_history"] if "train_runtime" in h)
    log = (out / "dsforge_train.log").read_text(errors="replace")
    loaded = next((x.split("loaded in ")[1].strip() for x in log.splitlines() if "model weights loaded in" in x), "?")
    return {"s_per_step": runtime / state["global_step"], "steps": state["global_step"], "loaded": loaded,
            "total_s": res["seconds"], "loss": res.get("train_loss")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=["dpo", "sft"], default="dpo")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cutoff", type=int, default=200)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()

    from dsforge import models
    from dsforge.hardware import native_bf16
    from dsforge.train import cpu_precision

    model = models.resolve(args.model)
    _, default, why = cpu_precision({})
    print(f"this CPU: {why}; dsforge train picks {default} by default (native bf16: {native_bf16()[0]})")
    with tempfile.TemporaryDirectory(prefix="bench_train_dtype.") as tmp:
        d = Path(tmp)
        make_data(d, args.stage, rows=max(8, args.steps * args.batch))
        got = {dt: one_run(args.stage, model, d, dt, args) for dt in ("float32", "bfloat16")}
    print(f"\n{args.stage}, LoRA, batch {args.batch}, cutoff_len {args.cutoff}, {args.steps} steps each")
    print(f"{'dtype':10s} {'s/step':>8s} {'run s':>8s} {'loss':>8s}  weights loaded in")
    for dt, r in got.items():
        print(f"{dt:10s} {r['s_per_step']:8.2f} {r['total_s']:8.1f} {r['loss'] or float('nan'):8.4f}  {r['loaded']}")
    ratio = got["bfloat16"]["s_per_step"] / got["float32"]["s_per_step"]
    print(f"bf16 / fp32 time per step: {ratio:.2f}x")


if __name__ == "__main__":
    main()
