#!/usr/bin/env bash
# What a GPU machine without network needs besides its own torch, gathered here into one folder DIR (default
# .gpu/, which git ignores): the wheels of hydra-core, omegaconf, hydra-joblib-launcher and antlr4 for its
# Python (PY, default 3.12; antlr4 is published only as a source archive, so its wheel is built here) and
# the four Fashion-MNIST files. Then, there: WHEELS=DIR/wheels DATA_ROOT=DIR/data bash scripts/gpu_session.sh ...
# Usage: scripts/gpu_carry.sh [DIR=.gpu] [FASHION_MNIST=/usr/share/datasets/fashion-mnist]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu}
data=${2:-/usr/share/datasets/fashion-mnist}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$dir/wheels" "$dir/data"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY:-3.12}" --implementation cp \
    --platform manylinux2014_x86_64 -d "$dir/wheels" hydra-core==1.3.2 omegaconf==2.3.0 hydra-joblib-launcher==1.2.0
"$py" -m pip wheel -q --no-deps -w "$dir/wheels" antlr4-python3-runtime==4.9.3
cp "$data"/*-ubyte.gz "$dir/data/"
echo "$dir: $(ls "$dir/wheels" | wc -l) wheels, $(ls "$dir/data" | wc -l) data files, $(du -sh "$dir" | cut -f1)"
