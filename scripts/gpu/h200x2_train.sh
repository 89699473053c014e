#!/usr/bin/env bash
# On a 2-GPU H200 machine (the `run` tool, kind nvidia-h200-x2): SFT and DPO LoRA of a random-weight model of
# Qwen2.5-1.5B's shape through `dsforge train` with torchrun (FORCE_TORCHRUN=1 NPROC_PER_NODE=2), then the very
# same YAML through `llamafactory-cli train` directly; samples/s per GPU and peak GPU memory side by side.
# Needs .carry/whl (dsforge's pydantic & co.), .carry/lfwhl (llamafactory 0.9.5, trl, datasets, peft, omegaconf,
# antlr4, dill, multiprocess) and .carry/smollm2 (config + tokenizer). DRY=1: stop after the dry runs (any machine).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/w; rm -rf $W; mkdir -p $W/data
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .carry/whl/*.whl .carry/lfwhl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
STEPS=${STEPS:-30}; SHAPE=${SHAPE:-qwen2.5-1.5b}; NPROC=${NPROC:-2}; LF_PY=${LF_PY:-$(command -v python3)}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 - "$W/data" <<'PY'
import json, random, sys
random.seed(0)
words = "the model learns from data that is checked before training starts and every row counts".split()
say = lambda n: " ".join(random.choice(words) for _ in range(n))
with open(f"{sys.argv[1]}/sft.jsonl", "w") as f:
    for i in range(4000):
        f.write(json.dumps({"instruction": f"Question {i}: {say(40)}?", "output": say(200) + "."}) + "\n")
with open(f"{sys.argv[1]}/dpo.jsonl", "w") as f:
    for i in range(4000):
        f.write(json.dumps({"instruction": f"Question {i}: {say(40)}?", "chosen": say(150) + ".",
                            "rejected": say(120) + "!"}) + "\n")
PY
python3 -m dsforge register $W/data/sft.jsonl --name syn_sft --dataset-dir $W/data | tail -1
python3 -m dsforge register $W/data/dpo.jsonl --name syn_dpo --dataset-dir $W/data | tail -1
if [ -n "${MODEL:-}" ]; then cp -r "$MODEL" $W/model; else
  python3 scripts/gpu/make_random_model.py .carry/smollm2 $W/model --shape $SHAPE 2>&1 | grep -v -E "Loading|shards"; fi
SETS="--set max_steps=$STEPS --set per_device_train_batch_size=8 --set gradient_accumulation_steps=1 \
  --set cutoff_len=512 --set logging_steps=5 --set save_steps=100000 --set plot_loss=false --set template=default"
peak() { sort -t, -k2 -n "$1" 2>/dev/null | awk -F', ' '{m[$1]=($2>m[$1]?$2:m[$1])} END {for (g in m) printf "%s%s", (n++?"/":""), m[g]}'; }
for stage in sft dpo; do
  ds=$W/out/${stage}_dsforge; direct=$W/out/${stage}_direct
  if [ -n "${DRY:-}" ]; then
    python3 -m dsforge train $stage -m $W/model --dataset syn_$stage --dataset-dir $W/data -o $ds $SETS --dry-run \
      --lf-python "$LF_PY" | tail -3; continue
  fi
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > $OUT/mem_${stage}_dsforge.csv &
  SMI=$!
  t0=$(date +%s%N)
  FORCE_TORCHRUN=1 NPROC_PER_NODE=$NPROC python3 -m dsforge train $stage -m $W/model --dataset syn_$stage \
    --dataset-dir $W/data -o $ds $SETS --lf-python "$LF_PY" 2>&1 | grep -v -E "it/s\]|s/it\]" | tail -8
  echo "wall dsforge $stage: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  kill $SMI; cp $ds/dsforge_manifest.json $OUT/manifest_${stage}.json 2>/dev/null
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > $OUT/mem_${stage}_direct.csv &
  SMI=$!
  t0=$(date +%s%N)
  DISABLE_VERSION_CHECK=1 FORCE_TORCHRUN=1 NPROC_PER_NODE=$NPROC llamafactory-cli train $ds/dsforge_train.yaml \
    output_dir=$direct > $W/direct_$stage.log 2>&1; echo "direct $stage rc=$?"; tail -3 $W/direct_$stage.log
  echo "wall direct $stage: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  kill $SMI
  if [ -n "${AGAIN:-}" ]; then   # dsforge once more, after the direct run: order effects (caches, clocks) show
    FORCE_TORCHRUN=1 NPROC_PER_NODE=$NPROC python3 -m dsforge train $stage -m $W/model --dataset syn_$stage \
      --dataset-dir $W/data -o ${ds}_again $SETS --lf-python "$LF_PY" > $W/again_$stage.log 2>&1
  fi
  for d in $ds $direct ${AGAIN:+${ds}_again}; do
    python3 -c "import json,sys; r=json.load(open(sys.argv[1]+'/all_results.json')); print(sys.argv[2], \
'samples/s per GPU %.2f' % (r['train_samples_per_second']/$NPROC), 'train_runtime %.1f s' % r['train_runtime'], \
'loss %.4f' % r['train_loss'])" $d "$(basename $d)" 2>&1 | tail -1
  done
  echo "peak MiB per GPU: dsforge $(peak $OUT/mem_${stage}_dsforge.csv)  direct $(peak $OUT/mem_${stage}_direct.csv)"
done
