#!/usr/bin/env bash
# A short GPU check for the device machine (a lent H200): the tiny-model test suite with device auto -> cuda,
# against that machine's own torch/transformers. Packaged assets are too big to travel, so tests that need
# them are left out. Usage (device tool): bash bench/device/gpu_check.sh   with .whl carried.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
python3 - <<'PY'
import torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
from taskfit.models.backbones import resolve_device
assert resolve_device("auto").type == "cuda", "auto should pick the GPU"
PY
python3 -m pytest -q -p no:cacheprovider tests/test_lm_scoring.py tests/test_strategies.py tests/test_prompts.py \
  tests/test_runner_cli.py tests/test_config.py -k "not datasets and not every_shipped" 2>&1 | tee ${OUT:-/tmp}/gpu_pytest.log | tail -40
