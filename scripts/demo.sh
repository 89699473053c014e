#!/usr/bin/env bash
# Fresh machine -> issue 12's loop, small, on CPU with the embedded SmolLM2-135M-Instruct (recipe loop-tiny):
# base eval on 200 frozen held-out sums -> 60 fresh sums x 6 samples (vLLM) -> numeric verifier ->
# correct-vs-wrong pairs -> DPO + NLL LoRA in LLaMA-Factory -> merged model -> the same eval, paired with the
# base: prints base vs trained accuracy with its 95% interval. The LLM-judge path: `dsforge run demo-tiny`.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh --lf
t1=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
rm -rf out/loop-tiny
.venv/bin/dsforge run loop-tiny "$@"
t2=$(date +%s)
printf '\nsetup %ss, loop %ss. Open out/loop-tiny/report.html; per-stage timings are in out/loop-tiny/manifest.json\n' \
  "$((t1 - t0))" "$((t2 - t1))"
