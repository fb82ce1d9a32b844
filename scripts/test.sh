#!/usr/bin/env bash
# The test command of README.md (and of CI): set up, lint, then the default (fast) test tiers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -q "$@"
