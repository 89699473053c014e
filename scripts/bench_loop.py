"""Benchmark: do on-policy rounds improve the embedded model? (issue 12's targets; not a timed test)

    python scripts/bench_loop.py --rounds 1 -o runs/bench_loop          # base eval + 1 round, then the table
    python scripts/bench_loop.py --rounds 3 -o runs/bench_loop          # rerun: finished stages are skipped

Per round t, with the real commands: `dsforge tasks make arith` (fresh training prompts, seed t; the frozen
held-out items are never generated) -> `dsforge sample` from the policy of round t-1 (vLLM) -> `dsforge judge
--verifier numeric` -> `dsforge pairs` (correct vs wrong, up to k per prompt) -> `dsforge register` ->
`dsforge train dpo` (LoRA, DPO + pref_ftx NLL term, reference = policy t-1) -> `dsforge export` (the merged
policy t) -> dsforge.evaluate on the frozen held-out set (dsforge/data/heldout: arith-5 is the metric,
units-1 the control family), greedy, paired with the base eval (bootstrap interval + McNemar).

Every stage writes into RUN/round-t/ and is skipped on a rerun when its output exists, so a killed run
continues where it stopped. Defaults are the settings found in /tmp/team/loop_log.md (engineer H's
sweep): 150 prompts x 8 samples at T=1.0, k=2 pairs per prompt, lr 1e-4, 2 epochs, beta 0.5, ftx 1.0,
LoRA rank 16 on all linear layers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dsforge import procs  # noqa: E402
from dsforge.evalstats import pct  # noqa: E402
from dsforge.tasks import HELDOUT_DIR  # noqa: E402

HELDOUT = {"arith": os.path.join(HELDOUT_DIR, "arith-5.jsonl"), "control": os.path.join(HELDOUT_DIR, "units-1.jsonl")}


def cli(args: list[str], log: str) -> float:
    """Run `dsforge ARGS` (output appended to `log`); seconds taken. Exits with the command's log tail on failure."""
    t = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ dsforge {' '.join(args)}\n")
        f.flush()
        proc = procs.start([sys.executable, "-m", "dsforge", *args], stdout=f, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait()
        finally:   # Ctrl-C or SIGTERM (handle_sigterm): the child's whole group goes too (train -> LLaMA-Factory)
            if proc.poll() is None:
                procs.stop_group(proc)
    if rc:
        with open(log) as f:
            sys.exit(f"dsforge {args[0]} failed (exit {rc}); end of {log}:\n" + "".join(f.readlines()[-25:]))
    return time.time() - t


def evaluate(model: str, folder: str, base: str | None, limit: int | None, max_tokens: int) -> dict:
    """Greedy eval of `model` on both held-out files with one vLLM engine -> {family: summary}."""
    from dsforge.evaluate import EvalConfig, engine_for, evaluate as run_eval

    out = {}
    for fam in HELDOUT:   # evals of an earlier run are read, and vLLM is not started for them
        dest = os.path.join(folder, f"eval-{fam}.json")
        if os.path.exists(dest):
            with open(dest) as f:
                out[fam] = json.load(f)["summary"]
    if len(out) == len(HELDOUT):
        return out
    cfg = EvalConfig(model=model, verifier="numeric", max_tokens=max_tokens)
    engine = engine_for(cfg, {"max_model_len": 512})
    with engine:
        for fam, path in HELDOUT.items():
            if fam in out:
                continue
            if limit:
                small = os.path.join(folder, f"heldout-{fam}.jsonl")
                with open(path) as f, open(small, "w") as g:
                    g.writelines(f.readlines()[:limit])
                path = small
            dest = os.path.join(folder, f"eval-{fam}.json")
            out[fam] = run_eval(cfg, path, dest, engine=engine, log=lambda *a, **k: None,
                                baseline=os.path.join(base, f"eval-{fam}.json") if base else None)
    return out


def one_round(t: int, model: str, run: str, a: argparse.Namespace) -> tuple[str, dict]:
    """Round t from policy `model`; returns (merged policy folder, round record)."""
    r = os.path.join(run, f"round-{t}")
    os.makedirs(r, exist_ok=True)
    done = os.path.join(r, "round.json")
    if os.path.exists(done):
        rec = json.load(open(done))
        return rec["policy"], rec
    log, sec = os.path.join(r, "dsforge.log"), {}
    p = lambda name: os.path.join(r, name)  # noqa: E731

    def stage(name, out, args):
        if not os.path.exists(out):
            sec[name] = round(cli(args, log), 1)

    stage("tasks", p("prompts.jsonl"), ["tasks", "make", "arith", "--difficulty", a.level, "--n", str(a.prompts),
                                        "--seed", str(1000 + t), "-o", p("prompts.jsonl")])
    stage("sample", p("cands.jsonl.summary.json"), ["sample", p("prompts.jsonl"), "-m", model, "--temps", str(a.temperature),
                                                    "-n", str(a.n), "--max-tokens", str(a.max_tokens), "--seed", str(t),
                                                    "--engine-opt", "max_model_len=512", "-o", p("cands.jsonl")])
    stage("judge", p("judged.jsonl"), ["judge", p("cands.jsonl"), "--verifier", "numeric", "-o", p("judged.jsonl")])
    stage("pairs", p("dpo.jsonl"), ["pairs", p("judged.jsonl"), "--max-pairs-per-prompt", str(a.k), "-o", p("dpo.jsonl")])
    stage("register", p("data/dataset_info.json"), ["register", p("dpo.jsonl"), "--name", f"round{t}",
                                                    "--dataset-dir", p("data"), "--stage", "dpo"])
    sets = {"learning_rate": a.lr, "num_train_epochs": a.epochs, "pref_beta": a.beta, "pref_ftx": a.ftx,
            "lora_rank": a.rank, "lora_alpha": 2 * a.rank, "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 1, "cutoff_len": 256, "preprocessing_num_workers": 1,
            "logging_steps": 5, "save_steps": 100000, "warmup_steps": 0.1, "seed": t}
    stage("train", p("train/trainer_state.json"), ["train", "dpo", "-m", model, "--dataset", f"round{t}",
                                                   "--dataset-dir", p("data"), "-o", p("train")]
          + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")])
    stage("export", p("merged/config.json"), ["export", "-m", model, "--adapter", p("train"), "-o", p("merged")])
    t0 = time.time()
    ev = evaluate(p("merged"), r, os.path.join(run, "base"), a.heldout_limit, a.eval_max_tokens)
    sec["eval"] = round(time.time() - t0, 1)
    pairs = json.load(open(p("dpo.jsonl.summary.json")))
    state = json.load(open(p("train/trainer_state.json")))
    rec = {"round": t, "policy": p("merged"), "from": model, "eval": ev, "pairs": pairs["pairs"],
           "pair_yield": pairs.get("pair_yield"), "chosen_longer_rate": pairs["chosen_longer_rate"],
           "steps": state.get("global_step"), "seconds": sec, "settings": vars(a)}
    with open(done + ".tmp", "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(done + ".tmp", done)
    return rec["policy"], rec


def table(base: dict, rounds: list[dict]) -> str:
    """The per-round table: accuracy with 95% intervals, paired diff vs base (+McNemar p), control, yield, cost."""
    head = ("| round | arith lenient [95% CI] | strict | diff vs base [95% CI], McNemar p | control lenient (diff) "
            "| reply tok | pair yield | pairs | steps | minutes (sample/judge/pairs/train/export/eval) |")
    lines = [head, "|" + "---|" * 10]
    for name, ev, rec in [("base", base, None)] + [(str(r["round"]), r["eval"], r) for r in rounds]:
        a, c = ev["arith"], ev["control"]
        le, st = a["pass1"]["lenient"], a["pass1"]["strict"]
        diff = ctl = ""
        if "baseline" in a:
            d = a["baseline"]["lenient"]
            diff = f"{100 * d['diff']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], p={d['mcnemar']['p']:.2g}"
            ctl = f" ({100 * c['baseline']['lenient']['diff']:+.1f})"
        cost = y = pairs = steps = ""
        if rec:
            s = rec["seconds"]
            cost = "/".join(f"{s.get(k, 0) / 60:.1f}" for k in ("sample", "judge", "pairs", "train", "export", "eval"))
            y = f"{rec['pair_yield']['rate']:.2f}" if rec.get("pair_yield") else "-"
            pairs, steps = rec["pairs"], rec["steps"]
        lines.append(f"| {name} | {pct(le['acc'])} [{pct(le['ci_low'])}, {pct(le['ci_high'])}] | {pct(st['acc'])} | {diff} | "
                     f"{pct(c['pass1']['lenient']['acc'])}{ctl} | {a['reply_tokens_mean']} | {y} | {pairs} | {steps} | {cost} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("-o", "--out", default="runs/bench_loop")
    ap.add_argument("-m", "--model", default="smollm2-135m-instruct")
    ap.add_argument("--level", default="5", help="arith difficulty of the training prompts (held-out: arith-5)")
    ap.add_argument("--prompts", type=int, default=150, help="training prompts per round")
    ap.add_argument("-n", "--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=2, help="pairs per prompt")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--ftx", type=float, default=1.0)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--heldout-limit", type=int, default=None, help="first N items of each held-out file (quick runs)")
    ap.add_argument("--eval-max-tokens", type=int, default=64)
    a = ap.parse_args()
    procs.handle_sigterm()   # SIGTERM takes Ctrl-C's path: cli() stops the running dsforge child
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from dsforge import models

    run = os.path.abspath(a.out)
    os.makedirs(os.path.join(run, "base"), exist_ok=True)
    model = models.resolve(a.model)
    t0 = time.time()
    base = evaluate(model, os.path.join(run, "base"), None, a.heldout_limit, a.eval_max_tokens)
    print(f"base eval {time.time() - t0:.0f} s", flush=True)
    rounds = []
    for t in range(1, a.rounds + 1):
        model, rec = one_round(t, model, run, a)
        rounds.append(rec)
        print(table(base, rounds).splitlines()[-1], flush=True)
    text = table(base, rounds)
    with open(os.path.join(run, "table.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
