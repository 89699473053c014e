"""Ground truth: dsforge validate's usable-row counts equal what LLaMA-Factory 0.9.5 keeps.

Runs LLaMA-Factory's own data pipeline (dsforge/lf/probe.py: get_dataset with a tiny local
tokenizer, and a tiny local LLaVA processor for media cases) on a corpus of valid and invalid
datasets, in one LLaMA-Factory process, and compares dataset by dataset.
"""

import json
import subprocess

import pytest

from dsforge.validate import LengthOptions, validate_registered
from tests import lf_corpus
from tests.conftest import ROOT

pytestmark = [pytest.mark.llamafactory, pytest.mark.slow]
CUTOFF = 64


@pytest.fixture(scope="module")
def lf_results(tmp_path_factory, lf_py):
    root = tmp_path_factory.mktemp("corpus")
    specs = lf_corpus.build(str(root))
    tok = tmp_path_factory.mktemp("lftok")
    mm = tmp_path_factory.mktemp("lfmm")
    subprocess.run([lf_py, str(ROOT / "scripts" / "make_tiny_tokenizer.py"), str(tok)], check=True)
    subprocess.run([lf_py, str(ROOT / "scripts" / "make_tiny_mm_processor.py"), str(mm)], check=True)
    proc = subprocess.run(
        [lf_py, str(ROOT / "dsforge" / "lf" / "probe.py"), "--dataset-dir", str(root), "--model", str(tok),
         "--mm-model", str(mm), "--cutoff-len", str(CUTOFF),
         *[f"{n}:{s}" + (f":{t}" if t else "") for n, s, t in specs]],
        capture_output=True, text=True, timeout=900)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("DSFORGE_PROBE "):
            r = json.loads(line[len("DSFORGE_PROBE "):])
            results[r["dataset"]] = r
    assert len(results) == len(specs), proc.stderr[-3000:]
    return root, specs, results, str(tok)


def test_every_dataset_agrees(lf_results):
    root, specs, results, tok = lf_results
    mismatches, rows_lf, rows_ours, total_rows = [], 0, 0, 0
    for name, stage, template in specs:
        lf = results[name]
        lengths = LengthOptions(tok, CUTOFF, "none") if stage == "pt" else None
        rep = validate_registered(str(root / "dataset_info.json"), name, stage, template=template, lengths=lengths)
        if stage == "pt":
            ours = 0 if rep.fatal else rep.lengths["pt_blocks"]
        else:
            ours = rep.would_train
        total_rows += rep.rows
        rows_lf += lf["rows"]
        rows_ours += ours
        if ours != lf["rows"]:
            mismatches.append((name, stage, lf["rows"], lf.get("error", ""), ours, dict(rep.counts)))
    print(f"\nagreement: {len(specs) - len(mismatches)}/{len(specs)} datasets; "
          f"rows kept LLaMA-Factory {rows_lf}, dsforge {rows_ours} (of {total_rows} rows)")
    assert not mismatches, "\n".join(map(str, mismatches))


def test_failing_datasets_are_named_fatal(lf_results):
    """Where LLaMA-Factory fails the whole dataset, dsforge says so (fatal), not merely 'rows dropped'."""
    root, specs, results, _ = lf_results
    for name, stage, template in specs:
        lf = results[name]
        if stage == "pt" or lf["ok"]:
            continue
        rep = validate_registered(str(root / "dataset_info.json"), name, stage, template=template)
        assert rep.fatal, (name, lf["error"], dict(rep.counts))
