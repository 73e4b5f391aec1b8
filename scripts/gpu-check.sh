#!/usr/bin/env bash
# The GPU check: one prepared, time-boxed command for a short GPU slot (issue #26).
# Plain bash + PYTHONPATH (no nox, no internet, no install). `scripts/gpu-check.sh --help`.
set -u

usage() {
    cat <<'USAGE'
usage: scripts/gpu-check.sh OUT_DIR [--rehearse] [--data-root DIR]

Runs five stages in order, each under its own time budget (`timeout`); each writes its results
to OUT_DIR as soon as it ends, and a stage that fails or overruns is recorded as such while the
next one still runs. OUT_DIR gets summary.md plus at most 7 other files, flat:
  1 env       repro env --check-compile, GPU name, driver, torch; pytest -m gpu -> pytest-gpu.xml
  2 ladder    ResNet-56, batch 128: eager fp32 NCHW -> channels_last -> bf16 -> compile default
              -> reduce-overhead -> max-autotune (if it compiles in time); train and eval images/s
              on a 50,000-image set tiled from the data present                    -> ladder.json
  3 memory    ResNet-1202, batch 128: peak memory and step time with/without activation
              checkpointing, fp32 and bf16                                          -> memory.json
  4 training  the core four nets (plain20/56, resnet20/56) trained time-boxed on the data present
              with the ladder's fastest path, one after another and --parallel 4 on the one GPU;
              200-epoch and 64k-iteration projections                             -> training.json
  5 bench     the GPU benchmarks (pytest-benchmark, tests/benchmarks)           -> benchmarks.json
  plus env.json, log.txt (every stage's output) and summary.md (rewritten after every stage).

Planned budgets on one H100 (seconds, python/torch start-up included):
  env 70, ladder 160, memory 40, training 150, bench 70 = 490 s (8 min 10 s), under 9 min with
  the harness. --rehearse: every stage on the CPU with tiny sizes (depth-8 nets, a few steps),
  budgets env 38, ladder 25, memory 18, training 70, bench 26 = 177 s (2 quiet cores).

Data (the GPU machine has no CIFAR-10; carry the 5,085-image subset along):
  mkdir -p .carry && cp -r ../shared/data/cifar-10-mini .carry/
  then name `.carry` among the paths carried to the GPU machine and run there:
  scripts/gpu-check.sh "$OUT" --data-root .carry/cifar-10-mini
Without --data-root: $REPRO_DATA, else .carry/cifar-10-mini, else ../shared/data/cifar-10-mini,
else the project default (data/cifar10).

Environment: PYTHON (default: python, else python3); GPU_CHECK_WORK (scratch folder for the
training runs; default a new temporary folder); GPU_CHECK_BUDGET_SCALE=F multiplies every budget
(a busy machine); GPU_CHECK_FAIL=STAGE[:hang],... makes a stage fail (or hang past its budget)
on purpose, to test the harness.
USAGE
}

die() {
    echo "gpu-check: $*" >&2
    exit 2
}

OUT="" REHEARSE=0 DATA_ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --rehearse) REHEARSE=1 ;;
    --data-root)
        [ $# -ge 2 ] || die "--data-root needs a folder, e.g. --data-root .carry/cifar-10-mini"
        DATA_ROOT="$2"; shift ;;
    -*) die "unknown option $1; see scripts/gpu-check.sh --help" ;;
    *)
        [ -z "$OUT" ] || die "one OUT_DIR only (got $OUT and $1); see --help"
        OUT="$1" ;;
    esac
    shift
done
[ -n "$OUT" ] || die "OUT_DIR is required: scripts/gpu-check.sh OUT_DIR [--rehearse] [--data-root DIR]"
command -v timeout >/dev/null || die "needs GNU coreutils' timeout on the PATH"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "$DATA_ROOT" ]; then
    [ -d "$DATA_ROOT" ] || die "--data-root $DATA_ROOT is not a folder; see --help for the data carrier recipe"
    DATA_ROOT="$(cd "$DATA_ROOT" && pwd)"
elif [ -n "${REPRO_DATA:-}" ]; then
    DATA_ROOT="$REPRO_DATA"
elif [ -d "$ROOT/.carry/cifar-10-mini" ]; then
    DATA_ROOT="$ROOT/.carry/cifar-10-mini"
elif [ -d "$ROOT/../shared/data/cifar-10-mini" ]; then
    DATA_ROOT="$(cd "$ROOT/../shared/data/cifar-10-mini" && pwd)"
fi

if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
    die "OUT_DIR $OUT is not empty: give an empty or new folder (the file count is checked)"
fi
mkdir -p "$OUT" || die "cannot create OUT_DIR $OUT"
OUT="$(cd "$OUT" && pwd)"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    PY="$(command -v python || command -v python3)" || die "no python on the PATH; set PYTHON"
fi
WORK="${GPU_CHECK_WORK:-$(mktemp -d -t gpu-check.XXXXXX)}"
mkdir -p "$WORK" || die "cannot create the scratch folder $WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT" || die "cannot enter $ROOT"

STAGES=(env ladder memory training bench)
if [ "$REHEARSE" = 1 ]; then
    BUDGETS=(38 25 18 70 26)  # CPU rehearsal, 2 quiet cores: 177 s at most
    MODE=(--rehearse)
    export OMP_NUM_THREADS=1  # one thread per process: several share 2 cores (reports/performance.md)
else
    BUDGETS=(70 160 40 150 70)  # one H100: 490 s, python/torch start-up included
    MODE=()
fi
if [ -n "${GPU_CHECK_BUDGET_SCALE:-}" ]; then  # a slower or busier machine: F x every budget
    for i in "${!BUDGETS[@]}"; do
        BUDGETS[i]=$(awk -v b="${BUDGETS[i]}" -v f="$GPU_CHECK_BUDGET_SCALE" 'BEGIN { printf "%d", b * f + 0.5 }')
        [ "${BUDGETS[i]}" -gt 0 ] || die "GPU_CHECK_BUDGET_SCALE=$GPU_CHECK_BUDGET_SCALE gives a budget of 0 s"
    done
fi
LOG="$OUT/log.txt"
COMMON=(--out "$OUT" --work "$WORK" --data-root "$DATA_ROOT" ${MODE[@]+"${MODE[@]}"})
echo "gpu-check: OUT_DIR $OUT, data ${DATA_ROOT:-'(project default)'}, scratch $WORK, budgets ${BUDGETS[*]} s" | tee "$LOG"
"$PY" -m scripts.gpu_check start "${COMMON[@]}" --budgets "${BUDGETS[@]}" >>"$LOG" 2>&1 ||
    die "could not start (see $LOG): is the repository intact?"

for i in "${!STAGES[@]}"; do
    stage="${STAGES[$i]}" budget="${BUDGETS[$i]}"
    echo "=== stage $((i + 1)) $stage (budget $budget s) $(date -u +%H:%M:%S) ===" >>"$LOG"
    t0=$(date +%s%N)
    # SIGINT at the budget (each stage ends itself a few seconds before), SIGKILL 5 s later
    timeout -s INT -k 5 "$budget" "$PY" -m scripts.gpu_check run "$stage" --budget "$budget" \
        --deadline "$((t0 / 1000000000 + budget))" "${COMMON[@]}" </dev/null >>"$LOG" 2>&1
    rc=$?
    seconds=$((($(date +%s%N) - t0) / 1000000))
    "$PY" -m scripts.gpu_check finish "$stage" --rc "$rc" --milliseconds "$seconds" \
        --budget "$budget" "${COMMON[@]}" 2>>"$LOG" | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" = 0 ] || echo "gpu-check: could not record stage $stage; see $LOG" | tee -a "$LOG"
    [ "$rc" = 0 ] || failed="${failed:-}${failed:+, }$stage"
done
"$PY" -m scripts.gpu_check check-limits "$OUT" | tee -a "$LOG"
limits=${PIPESTATUS[0]}
[ -n "${GPU_CHECK_WORK:-}" ] || rm -rf "$WORK"
echo "gpu-check: done; read $OUT/summary.md${failed:+ (not ok: $failed)}"
[ "$limits" = 0 ] && [ -z "${failed:-}" ]
