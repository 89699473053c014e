#!/usr/bin/env bash
# Fresh machine -> the main job end to end on CPU with the embedded SmolLM2-135M-Instruct:
# convert the bundled FAQ csv into prompts -> sample 4 answers per prompt (2 temperatures x 2) with
# vLLM -> judge them with the same small model behind a local OpenAI-compatible server (started
# and stopped here) -> DPO pairs -> dataset_info.json -> 4 steps of DPO LoRA training -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh --lf
t1=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
rm -rf out/demo/run
.venv/bin/dsforge run demo-tiny "$@"
t2=$(date +%s)
printf '\nsetup %ss, pipeline %ss. Open out/demo/run/report.html; per-stage timings are in out/demo/run/manifest.json\n' \
  "$((t1 - t0))" "$((t2 - t1))"
