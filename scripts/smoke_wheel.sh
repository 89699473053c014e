#!/usr/bin/env bash
# Install as users install: build the wheel from a clean copy of the source, install it (dependencies
# from the package index) into a fresh virtualenv, and drive the installed `dsforge` from an empty
# folder that cannot see the repository: convert -> validate -> register -> train --dry-run, and a
# shipped pipeline recipe by name. Fails when a command reads a file that the wheel does not ship.
#   scripts/smoke_wheel.sh                       uses python3; PYTHON=... to pick another
#   SMOKE_MODEL=/path/to/model                   model for train --dry-run (default: the embedded alias,
#                                                prepared by scripts/setup.sh)
#   SMOKE_KEEP=1                                 keep the temp folder (printed) for a look
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dsforge-wheel.XXXXXX")
[ "${SMOKE_KEEP:-0}" = 1 ] && echo "smoke folder: $tmp" || trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)

# 1. wheel from the files git knows (tracked + new, not ignored): stale build/ or *.egg-info in the
#    working tree cannot leak into it
mkdir -p "$tmp/src" "$tmp/dist" "$tmp/work"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$tmp/src")
else
  (cd "$repo" && tar --exclude='./.venv*' --exclude=./build --exclude='*.egg-info' --exclude=./out -cf - .) | tar -C "$tmp/src" -xf -
fi
quiet() { "$@" >"$tmp/step.log" 2>&1 || { cat "$tmp/step.log" >&2; echo "FAIL: $*" >&2; exit 1; }; }
quiet "$PY" -m venv "$tmp/venv"
quiet "$tmp/venv/bin/pip" install -q --upgrade pip setuptools wheel
quiet "$tmp/venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$tmp/dist" "$tmp/src"
whl=$(ls "$tmp/dist"/dsforge-*.whl)
rm -rf "$tmp/src"
quiet "$tmp/venv/bin/pip" install -q "$whl"
t1=$(date +%s)

# 2. the installed commands, from an empty folder (no repo on sys.path, no ./.venv-lf, no recipes/)
cd "$tmp/work"
export PATH="$tmp/venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset PYTHONPATH DSFORGE_LF_PYTHON
pkg=$(python -c "import dsforge, os; print(os.path.dirname(dsforge.__file__))")
case "$pkg" in "$tmp"/venv/*) ;; *) echo "FAIL: dsforge imported from $pkg, not from the wheel" >&2; exit 1 ;; esac
step() { echo "+ $*"; "$@" 2>&1 | sed 's/^/    /'; }   # pipefail: the command's failure fails the script
step dsforge --version
step dsforge convert "$pkg/data/demo/faq.csv" --to sft --format sharegpt --map instruction=question \
  --map output=answer --skip-bad -o sft.jsonl
step dsforge validate sft.jsonl
step dsforge register sft.jsonl --name smoke_sft --dataset-dir data
for recipe in freeze full lora; do   # lora last: its YAML is shown
  cmd=(dsforge train sft --model "${SMOKE_MODEL:-smollm2-135m-instruct}" --dataset smoke_sft --dataset-dir data
       --recipe "$recipe" --set max_steps=1 -o "saves/$recipe" --dry-run)
  # no LLaMA-Factory here (no .venv-lf in this folder, DSFORGE_LF_PYTHON unset): a dry run must not need it
  "${cmd[@]}" >"train-$recipe.txt" 2>&1 && grep -q "finetuning_type: $recipe" "train-$recipe.txt" \
    || { echo "+ ${cmd[*]}"; cat "train-$recipe.txt"; echo "FAIL: train --recipe $recipe --dry-run" >&2; exit 1; }
done
echo "+ ${cmd[*]}"; sed 's/^/    /' train-lora.txt
step dsforge run sft-from-qa --until register --set run_dir=run --no-report
test -s run/data/dataset_info.json || { echo "FAIL: the shipped recipe registered nothing" >&2; exit 1; }
echo "wheel smoke ok: $(basename "$whl") installed in a fresh venv (build+install $((t1 - t0)) s, commands $(( $(date +%s) - t1 )) s)"
