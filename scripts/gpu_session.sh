#!/usr/bin/env bash
# One bounded session on a GPU machine lent for minutes, prepared so that a machine that vanishes loses
# nothing but the runs still training:
#   1. how to fill the GPU: the aggregate training img/s of each layout in PACK_SPECS, one row of
#      DEST/packing.md as each finishes: P processes side by side (hydra/launcher=joblib), each training S
#      seeds as one folded model (trainer.stack=S), optionally under NVIDIA MPS or with CUDA graphs;
#   2. a queue of studies (experiment configs), one after another, in the layout that measured fastest
#      (or JOBS/STACK/MPS as given), each as its own sample <study>_gpu (or <study>_gpu_stack<S>): GPU and
#      stacked runs are never pooled with others. At the deadline the running cells get SIGTERM.
# SECONDS bounds the whole session, measurement included. The small files of every completed run
# (summary.json, metrics.csv, .hydra/config.yaml and hydra.yaml, wandb/) are packed into DEST/runs.tar every
# 15 s and at the end. RUNS_IN, an earlier session's runs.tar, is unpacked first: its completed cells are
# skipped and packed again with the new ones, so DEST/runs.tar is always the whole sample so far. The runs
# train without W&B (logger.mode=disabled); at the end, where wandb is installed, `python -m
# xablate.log_wandb` makes each completed run its offline W&B run, packed with it; elsewhere the session
# prints the command that does it after unpacking.
#
# Usage: scripts/gpu_session.sh DEST [SECONDS=540] [STUDY... (default fig11_iso)] [-- overrides for every study]
#   PACK_STEPS=150   training steps of each packing run (0: no measurement)
#   PACK_SPECS="1 8 16 1x8 1x16 4x4 8x4 16+mps 4x4+mps 1:reduce-overhead 1x8:reduce-overhead"
#                    P[xS][:compile mode][+mps]: P processes of S stacked seeds each
#   PACK_LIMIT=75    seconds at most for one packing row (a compile that takes longer is cut off)
#   JOBS, STACK, MPS=0|1, COMPILE_MODE   the studies' layout; unset: the fastest measured row (else 8x1)
#   RUNS_IN=file     an earlier session's runs.tar
#   WHEELS=dir       wheels to install first (pip --target, no index) where hydra is missing
#   DATA_ROOT=dir    Fashion-MNIST's four .gz files, if not at the data config's root
#   DEVICE=cuda      trainer.device (cpu to test the script)
set -euo pipefail
started=$(date +%s)
dest=$(mkdir -p "$1" && cd "$1" && pwd)
deadline=$(( started + ${2:-540} ))
shift $(( $# < 2 ? $# : 2 ))
studies=()
while (( $# )) && [[ $1 != -- ]]; do studies+=("$1"); shift; done
(( $# )) && shift
(( ${#studies[@]} )) || studies=(fig11_iso)
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

mkdir -p "$work/runs"
if [[ -n ${RUNS_IN:-} ]]; then
    tar -xf "$RUNS_IN" -C "$work/runs"
    echo "earlier runs: $(find "$work/runs" -name summary.json | wc -l) completed, from $RUNS_IN"
fi

pack() {  # the completed runs under $1 into $2, atomically
    (cd "$1" && find . -name summary.json -exec grep -l '"status": "completed"' {} + 2>/dev/null | while read -r s; do
        d=$(dirname "$s"); echo "$s"; echo "$d/metrics.csv"
        for f in .hydra/config.yaml .hydra/hydra.yaml wandb; do if [[ -e $d/$f ]]; then echo "$d/$f"; fi; done
    done | tar -cf "$2.tmp" -T - && mv "$2.tmp" "$2") || true
}
left() { echo $(( deadline - $(date +%s) )); }

mps_on() {  # an MPS control daemon of our own (its pipes in $work), so the processes' kernels can overlap
    command -v nvidia-cuda-mps-control >/dev/null || return 1
    export CUDA_MPS_PIPE_DIRECTORY="$work/mps/pipe" CUDA_MPS_LOG_DIRECTORY="$work/mps/log"
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d
}
mps_off() {
    [[ -n ${CUDA_MPS_PIPE_DIRECTORY:-} ]] || return 0
    echo quit | nvidia-cuda-mps-control || true
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
trap mps_off EXIT

layout() {  # P[xS][:mode][+mps] -> "P S mode mps"
    local spec=$1 mps=0 mode=-
    [[ $spec == *+mps ]] && mps=1 && spec=${spec%+mps}
    [[ $spec == *:* ]] && mode=${spec#*:} && spec=${spec%%:*}
    local p=${spec%%x*} s=1
    [[ $spec == *x* ]] && s=${spec#*x}
    echo "$p $s $mode $mps"
}
layout_args() {  # P S mode -> the overrides of that layout
    echo "hydra.launcher.n_jobs=$1 trainer.stack=$2"
    [[ $3 == - ]] || echo "trainer.compile=true trainer.compile_mode=$3"
}

if (( ${PACK_STEPS:-150} > 0 )); then
    echo "| processes | seeds stacked in each | extra | wall s (start-up included) | aggregate img/s (wall) | sum of the runs' train img/s |" >"$dest/packing.md"
    echo "|---:|---:|---|---:|---:|---:|" >>"$dest/packing.md"
    for spec in ${PACK_SPECS:-1 8 16 1x8 1x16 4x4 8x4 16+mps 4x4+mps 1:reduce-overhead 1x8:reduce-overhead}; do
        read -r p s mode mps <<<"$(layout "$spec")"
        limit=$(( $(left) < ${PACK_LIMIT:-75} ? $(left) : ${PACK_LIMIT:-75} ))
        (( limit > 10 )) || { echo "packing: no time left for $spec"; break; }
        if (( mps )) && ! mps_on; then echo "| $p | $s | MPS: no nvidia-cuda-mps-control here | | | |" >>"$dest/packing.md"; continue; fi
        # block leads first, so the P processes start P different stacks
        seeds=$("$py" -c "import sys; p, s = map(int, sys.argv[1:]); print(','.join(map(str, sorted(range(p * s), key=lambda x: (x % s, x)))))" "$p" "$s")
        out="$work/pack/$spec"
        start=$(date +%s%N)
        # shellcheck disable=SC2046
        timeout --signal=TERM --kill-after=20 "$limit" "$py" -m xablate -m "seed=$seeds" trainer.max_steps="$PACK_STEPS" \
            trainer.evals=1 data.val_subset=1000 $(layout_args "$p" "$s" "$mode") "${common[@]}" out_dir="$out" \
            >"$work/pack.log" 2>&1 || echo "packing $spec stopped (exit $?): $(tail -n 1 "$work/pack.log")"
        mps_off
        extra=""
        [[ $mode == - ]] || extra=$mode
        (( mps == 0 )) || extra+=" MPS"
        "$py" - "$out" "$p" "$s" "$start" "$extra" "$work/pack.tsv" "$spec" >>"$dest/packing.md" <<'EOF'
import json, pathlib, sys, time
out, p, s, start, extra, tsv, spec = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
wall = (time.time_ns() - start) / 1e9
runs = [json.loads(q.read_text()) for q in pathlib.Path(out).rglob("summary.json")]
runs = [r for r in runs if r.get("status") == "completed"]
agg = sum(r["train_img_per_s"] * r["train_s"] for r in runs) / wall
note = "" if len(runs) == p * s else f" ({len(runs)} of {p * s} runs completed)"
print(f"| {p} | {s} | {extra.strip()}{note} | {wall:.0f} | {agg:,.0f} | {sum(r['train_img_per_s'] for r in runs):,.0f} |")
if len(runs) == p * s:
    with open(tsv, "a") as f:
        f.write(f"{agg:.0f} {spec}\n")
EOF
        tail -n 1 "$dest/packing.md"
        pack "$work/pack" "$dest/pack.tar"
    done
fi

best=""
[[ -s $work/pack.tsv ]] && best=$(sort -nr "$work/pack.tsv" | head -n 1 | cut -d' ' -f2)
read -r p s mode mps <<<"$(layout "${best:-8}")"
p=${JOBS:-$p} s=${STACK:-$s} mps=${MPS:-$mps} mode=${COMPILE_MODE:-$mode}
how="$p processes of $s stacked seeds"
[[ $mode == - ]] || how+=", compile mode $mode"
(( mps == 0 )) || how+=", MPS"
echo "studies ${studies[*]}: $how, until $(date -d "@$deadline" +%T)${best:+ (fastest measured: $best)}"
if (( mps )) && ! mps_on; then echo "MPS: no nvidia-cuda-mps-control here; without it"; mps=0; fi
(while sleep 15; do pack "$work/runs" "$dest/runs.tar"; done) &
packer=$!
for study in "${studies[@]}"; do
    (( $(left) > 10 )) || { echo "study $study: no time left"; continue; }
    sample="${study}_gpu"
    (( s > 1 )) && sample="${study}_gpu_stack$s"
    echo "study $study as $sample: at most $(left) s"
    # shellcheck disable=SC2046
    timeout --signal=TERM --kill-after=60 "$(left)" "$py" -m xablate experiment="$study" study="$sample" \
        $(layout_args "$p" "$s" "$mode") "${common[@]}" out_dir="$work/runs" "$@" || echo "study $study stopped (exit $?)"
done
kill "$packer" 2>/dev/null || true
mps_off
if "$py" -c "import wandb" 2>/dev/null; then
    "$py" -m xablate.log_wandb "$work/runs" || echo "W&B logging failed (exit $?): the runs are packed without it"
    echo "after unpacking runs.tar into runs/: wandb sync runs/<study>_gpu*/*/wandb/offline-run-*"
else
    echo "wandb is not installed here: after unpacking runs.tar into runs/, python -m xablate.log_wandb runs/<study>_gpu*"
fi
pack "$work/runs" "$dest/runs.tar"
echo "runs packed: $(tar -tf "$dest/runs.tar" 2>/dev/null | grep -c summary.json || echo 0) completed"
