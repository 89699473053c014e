"""Run LLaMA-Factory's own data pipeline on one dataset and print what it keeps, as JSON.

Usage (inside LLaMA-Factory's interpreter):
    python probe.py --dataset-dir DIR --model TOKENIZER_DIR [--template T] [--mm-model DIR] NAME:STAGE[:TEMPLATE] ...

A spec with its own TEMPLATE (e.g. llava) is run with that template and --mm-model, a model folder with a
processor (scripts/make_tiny_mm_processor.py builds a tiny local one), so media rows take LLaMA-Factory's
real multimodal path.

This is dsforge's ground truth: `dsforge validate --cross-check` and the agreement tests compare
their counts with the numbers printed here. Stdlib + llamafactory only; no dsforge imports.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shim  # noqa: E402

shim.install()


def probe(ns, name: str, stage_arg: str, template: str | None = None) -> dict:
    """Load dataset `name` from ns.dataset_dir the way `llamafactory-cli train` would and count its rows.

    Runs get_train_args, load_tokenizer, get_template_and_fix_tokenizer and get_dataset (llamafactory
    0.9.5, data/loader.py) with ns.cutoff_len; dpo is loaded as stage "rm", as train/dpo/workflow.py
    does. Returns {dataset, stage (as given), template, ok, rows (kept after preprocessing; 0 on
    failure), error ("Type: message", at most 500 characters; only when not ok)}. Never raises: every
    failure, SystemExit included, is reported in the dict.
    """
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    stage = "rm" if stage_arg == "dpo" else stage_arg
    result: dict = {"dataset": name, "stage": stage_arg, "template": template or ns.template}
    model = ns.mm_model if template and ns.mm_model else ns.model
    with tempfile.TemporaryDirectory() as out:
        args = dict(
            model_name_or_path=model, stage=stage_arg, do_train=True, finetuning_type="lora",
            dataset=name, dataset_dir=ns.dataset_dir, template=template or ns.template,
            cutoff_len=ns.cutoff_len, output_dir=out, overwrite_cache=True, report_to="none",
        )
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                model_args, data_args, training_args, _, _ = get_train_args(args)
                tm = load_tokenizer(model_args)
                tok = tm["tokenizer"]
                tmpl = get_template_and_fix_tokenizer(tok, data_args)
                module = get_dataset(tmpl, model_args, data_args, training_args, stage, tok, tm["processor"])
            result.update(ok=True, rows=len(module["train_dataset"]))
        except BaseException as err:  # noqa: BLE001 - every failure mode is reported as data
            result.update(ok=False, rows=0, error=f"{type(err).__name__}: {err}"[:500])
    return result


def main() -> int:
    """Probe every NAME:STAGE[:TEMPLATE] spec; print one 'DSFORGE_PROBE {json}' line each (probe()'s dict).

    Returns 0; a bad command line exits 2 (argparse).
    """
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset-dir", required=True)
    ap.add_argument("specs", nargs="+", metavar="NAME:STAGE", help="dataset key and stage (pt/sft/rm/dpo/kto/ppo)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--template", default="default")
    ap.add_argument("--mm-model", help="model folder with a processor, for specs that name a multimodal template")
    ap.add_argument("--cutoff-len", type=int, default=4096)
    ns = ap.parse_args()

    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for spec in ns.specs:
        name, stage_arg, *tmpl = spec.split(":")
        print("DSFORGE_PROBE " + json.dumps(probe(ns, name, stage_arg, tmpl[0] if tmpl else None)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
