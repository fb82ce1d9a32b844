#!/usr/bin/env bash
# The test command of README.md (and of CI): set up, lint, the default (fast) tier, the slow tier, then the
# slurm tier on a one-node SLURM cluster that scripts/slurm_cluster.sh brings up on this machine.
# XABLATE_SLOW_TIER=0 and XABLATE_SLURM_TIER=0 leave those tiers out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check .
workers="${XABLATE_TEST_WORKERS:-2}"  # most tests train with 1 thread: 2 at once
.venv/bin/python -m pytest -q -n "$workers" "$@"
[ "${XABLATE_SLOW_TIER:-1}" = 0 ] || .venv/bin/python -m pytest -q -n "$workers" -m slow "$@"

[ "${XABLATE_SLURM_TIER:-1}" != 0 ] || { echo "slurm tier: skipped (XABLATE_SLURM_TIER=0)"; exit 0; }
# A cluster that was already up is left running; one started here is stopped again, so the machine is
# left as it was found (but for the installed packages).
started_here=0
if ! bash scripts/slurm_cluster.sh status >/dev/null 2>&1; then
  rc=0
  msg="$(bash scripts/slurm_cluster.sh start 2>&1)" || rc=$?
  if [ "$rc" -eq 3 ]; then
    # This machine cannot host a cluster (not root, no apt-get, another cluster's config): not a failure.
    echo "slurm tier: skipped: ${msg##*$'\n'}"
    exit 0
  elif [ "$rc" -ne 0 ]; then
    # It should have worked here; in CI that is a failure, elsewhere the rest of the suite still counts.
    echo "slurm tier: could not start a SLURM cluster: ${msg##*$'\n'}"
    [ "${CI:-}" != true ] || exit 1
    exit 0
  fi
  echo "$msg"
  started_here=1
fi
[ "$started_here" -eq 0 ] || trap 'bash scripts/slurm_cluster.sh stop >/dev/null' EXIT
.venv/bin/python -m pytest -q -m slurm
