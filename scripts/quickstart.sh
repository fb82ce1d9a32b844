#!/usr/bin/env bash
# README.md's main job: set up, run a real segments sweep on Fashion-MNIST (segments 1, 4, 16 and
# depthwise on a fifth of the training set, 2 epochs each, 4 evaluations an epoch), then draw its figures.
# Arguments are passed on to the sweep, e.g. `bash scripts/quickstart.sh data.train_subset=null`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m xablate experiment=quickstart "$@"
.venv/bin/python -m analysis runs/quickstart --out runs/quickstart/analysis
echo "Figures and tables: runs/quickstart/analysis/"
