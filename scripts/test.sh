#!/usr/bin/env bash
# Fresh machine -> passing tests: sets up both environments, smoke-tests the built wheel in a clean
# virtualenv (scripts/smoke_wheel.sh: install as users install), then runs the whole suite.
# Arguments go to pytest; DSFORGE_SKIP_WHEEL_SMOKE=1 skips the wheel smoke test (CI never does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --lf
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ "${DSFORGE_SKIP_WHEEL_SMOKE:-0}" = 1 ] || bash scripts/smoke_wheel.sh
exec .venv/bin/python -m pytest -q "$@"
