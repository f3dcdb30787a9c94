#!/usr/bin/env bash
# The README's main job: set up .venv, then segment the bundled example image, offline, with the
# bundled demo model (examples/demo-model, trained on synthetic shapes by
# examples/train_demo_model.py). Results go to outputs/demo/; run again, it starts them over.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-venv.sh
export HF_HUB_OFFLINE=1
.venv/bin/clsclip segment examples/images/shapes.png \
    --classes "red disc" "blue triangle" "yellow ring" "green cross" "blue square" \
    --model examples/demo-model --out outputs/demo --device cpu --overwrite
.venv/bin/clsclip segment examples/images/shapes.png \
    --classes "red disc" "yellow ring" --boxes examples/boxes.json \
    --model examples/demo-model --out outputs/demo-zoom --device cpu --overwrite
echo "wrote outputs/demo/ and outputs/demo-zoom/ (overlay, one mask per class, JSON summary)"
