#!/usr/bin/env bash
# The README's main job: set up .venv, then segment the bundled example image, offline, with a
# small model created on this machine. Results go to outputs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-venv.sh
export HF_HUB_OFFLINE=1
if [ ! -f examples/demo-model/model.safetensors ]; then
    .venv/bin/python examples/make_demo_model.py examples/demo-model
fi
.venv/bin/clsclip segment examples/images/park.png \
    --classes sky grass sun "red car" tree ball \
    --model examples/demo-model --out outputs/demo
echo "wrote outputs/demo/ (park_overlay.png, one mask per class, park.json)"
