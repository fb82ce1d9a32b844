#!/usr/bin/env bash
# One short session on a GPU machine, prepared so that a machine lent for minutes loses nothing:
#   1. many cells per GPU: the aggregate training img/s of K = 1, 2, 4, 8 runs side by side on the one GPU
#      (hydra/launcher=joblib), and of one run with CUDA graphs (trainer.compile_mode=reduce-overhead),
#      written to DEST/packing.md as each K finishes;
#   2. a study's cells, K at a time, fp32, deterministic, as their own study <study>_gpu (GPU runs are their
#      own sample, never pooled with CPU runs), for SECONDS at most, then stopped with SIGTERM (the running
#      cells checkpoint and would resume).
# The small files of every completed run (summary.json, metrics.csv, .hydra/config.yaml and hydra.yaml) are
# packed into DEST/runs.tar every 20 s and at the end, so a time limit loses only the runs still training. Unpack
# it into runs/ and run `python -m analysis runs/<study>_gpu`. The runs train without W&B; at the end, where
# wandb is installed, `python -m xablate.log_wandb` makes each completed run its offline W&B run, packed with it
# (`wandb sync` after unpacking); elsewhere the session prints the command that does it after unpacking.
#
# Usage: scripts/gpu_session.sh DEST [STUDY=fig10] [K=8] [SECONDS=300] [study overrides...]
#   PACK_STEPS=200   training steps of each run of the packing measurement (0: leave it out)
#   PACK_SPECS="1 2 4 8 1:reduce-overhead"   runs side by side, and a compile mode after a colon
#   WHEELS=dir       wheels to install first (pip --target, no index) where hydra is missing
#   DATA_ROOT=dir    Fashion-MNIST's four .gz files, if not at the data config's root
set -euo pipefail
dest=$(mkdir -p "$1" && cd "$1" && pwd)
study=${2:-fig10}
jobs=${3:-8}
budget=${4:-300}
shift $(( $# < 4 ? $# : 4 ))
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/xablate-gpu.XXXXXX)
py=${PYTHON:-python3}
cd "$repo"
exec > >(tee -a "$dest/session.log") 2>&1

if ! "$py" -c "import hydra" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "${WHEELS:?hydra is missing: set WHEELS}"/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
common=(logger.mode=disabled trainer.device="${DEVICE:-cuda}" hydra/launcher=joblib)
[[ -n ${DATA_ROOT:-} ]] && common+=(data.root="$(cd "$DATA_ROOT" && pwd)")
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

pack() {  # the completed runs under $1 into $2, atomically
    (cd "$1" && find . -name summary.json -exec grep -l '"status": "completed"' {} + 2>/dev/null | while read -r s; do
        d=$(dirname "$s"); echo "$s"; echo "$d/metrics.csv"
        for f in .hydra/config.yaml .hydra/hydra.yaml wandb; do if [[ -e $d/$f ]]; then echo "$d/$f"; fi; done
    done | tar -cf "$2.tmp" -T - && mv "$2.tmp" "$2") || true
}

if (( ${PACK_STEPS:-200} > 0 )); then
    echo "| runs side by side | extra | wall s (start-up included) | aggregate img/s (wall) | sum of the runs' train img/s |" >"$dest/packing.md"
    echo "|---:|---|---:|---:|---:|" >>"$dest/packing.md"
    for spec in ${PACK_SPECS:-1 2 4 8 1:reduce-overhead}; do
        k=${spec%%:*} mode=${spec#"$k"} mode=${mode#:}
        extra=()
        [[ -n ${mode:-} ]] && extra=(trainer.compile=true trainer.compile_mode="$mode")
        out="$work/pack/k$k${mode:+-$mode}"
        start=$(date +%s%N)
        "$py" -m xablate -m "seed=$(seq -s, 0 $((k - 1)))" trainer.max_steps="$PACK_STEPS" trainer.evals=1 \
            data.val_subset=1000 hydra.launcher.n_jobs="$k" "${common[@]}" "${extra[@]}" out_dir="$out" >/dev/null
        "$py" - "$out" "$k" "$start" "${mode:-}" >>"$dest/packing.md" <<'EOF'
import json, pathlib, sys, time
out, k, start, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wall = (time.time_ns() - start) / 1e9
runs = [json.loads(p.read_text()) for p in pathlib.Path(out).rglob("summary.json")]
agg = sum(r["train_img_per_s"] * r["train_s"] for r in runs) / wall
print(f"| {k} | {mode or ''} | {wall:.0f} | {agg:,.0f} | {sum(r['train_img_per_s'] for r in runs):,.0f} |")
EOF
        tail -n 1 "$dest/packing.md"
        pack "$work/pack" "$dest/pack.tar"
    done
fi

echo "study $study: $jobs at a time for at most $budget s"
(while sleep 20; do pack "$work/runs" "$dest/runs.tar"; done) &
packer=$!
timeout --signal=TERM --kill-after=60 "$budget" "$py" -m xablate experiment="$study" study="${study}_gpu" \
    hydra.launcher.n_jobs="$jobs" "${common[@]}" out_dir="$work/runs" "$@" || echo "study stopped (exit $?)"
kill "$packer" 2>/dev/null || true
if "$py" -c "import wandb" 2>/dev/null; then
    "$py" -m xablate.log_wandb "$work/runs" || echo "W&B logging failed (exit $?): the runs are packed without it"
    echo "after unpacking runs.tar into runs/: wandb sync runs/${study}_gpu/*/wandb/offline-run-*"
else
    echo "wandb is not installed here: after unpacking runs.tar into runs/, python -m xablate.log_wandb runs/${study}_gpu"
fi
pack "$work/runs" "$dest/runs.tar"
echo "runs packed: $(tar -tf "$dest/runs.tar" 2>/dev/null | grep -c summary.json || echo 0) completed"
