#!/usr/bin/env bash
# On the H200 machine (the `run` tool; only torch/transformers/peft/accelerate there): the hf engine vs a bare
# generate loop, random-weight models built there from carried config + tokenizer files, plus the hf engine tests.
# Needs .carry/whl (pydantic, pydantic_core, annotated_types, typing_inspection, orjson wheels, cp312) and
# .carry/smollm2 (config.json, tokenizer files of SmolLM2-135M-Instruct). Results land in $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .carry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
for shape in ${SHAPES:-smollm2-135m qwen2.5-0.5b}; do
  python3 scripts/gpu/make_random_model.py .carry/smollm2 /tmp/m-$shape --shape $shape 2>&1 | grep -v Loading
  python3 scripts/bench_sample.py --engine hf --model /tmp/m-$shape --prompts ${PROMPTS:-64} --n 4 --max-tokens 64 \
    --batch-size ${BATCH:-32} --repeat ${REPEAT:-3} --warmup ${WARMUP:-1} --json "$OUT/bench-$shape.json" 2>&1 | grep -v -E "Loading|it/s\]"
done
python3 -m pytest -q -p no:cacheprovider tests/test_hf_engine.py 2>&1 | tail -5
