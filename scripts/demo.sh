#!/usr/bin/env bash
# Fresh machine -> the main job end to end on the bundled corpus (the data half of the pipeline):
# convert raw files -> validate with LLaMA-Factory's rules -> register into dataset_info.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${DSFORGE_DEMO_OUT:-out/demo}
DEMO=dsforge/data/demo
ds=.venv/bin/dsforge
rm -rf "$OUT" && mkdir -p "$OUT/data"
step() { printf '\n== %s\n' "$*"; }
t0=$(date +%s)

step "convert: FAQ csv -> sharegpt SFT (dedup, 15% eval split grouped by prompt)"
$ds convert $DEMO/faq.csv --to sft --format sharegpt --map instruction=question --map output=answer \
  --system "You are a concise assistant for LLM fine-tuning questions." \
  --eval-ratio 0.15 --eval-out "$OUT/data/faq_eval.jsonl" --shuffle --seed 7 --skip-bad -o "$OUT/data/faq_sft.jsonl"

step "convert: markdown notes -> pretraining text (400-char chunks, 50 overlap)"
$ds convert $DEMO/notes --to pt --chunk-chars 400 --overlap 50 -o "$OUT/data/notes_pt.jsonl"

step "validate (LLaMA-Factory 0.9.5 rules)"
$ds validate "$OUT/data/faq_sft.jsonl" "$OUT/data/notes_pt.jsonl"

step "register into $OUT/data/dataset_info.json"
$ds register "$OUT/data/faq_sft.jsonl" --name faq_sft --dataset-dir "$OUT/data"
$ds register "$OUT/data/faq_eval.jsonl" --name faq_eval --dataset-dir "$OUT/data"
$ds register "$OUT/data/notes_pt.jsonl" --name notes_pt --dataset-dir "$OUT/data"

step "validate every registered dataset as LLaMA-Factory will load it"
$ds validate --dataset-info "$OUT/data"

printf '\ndemo done in %ss; outputs in %s\n' "$(( $(date +%s) - t0 ))" "$OUT/data"
