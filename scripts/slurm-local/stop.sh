#!/usr/bin/env bash
# Stop the cluster that start.sh STATE_DIR started: cancel its jobs (so that no job step outlives
# slurmd), then stop exactly the PIDs recorded in STATE_DIR/pids, newest first (SIGTERM, then
# SIGKILL after 20 s). A PID whose command line no longer names its daemon (gone, or reused) is
# left alone. STATE_DIR itself is kept (its log/ helps); `stop.sh STATE_DIR --clean` removes it.
set -uo pipefail

STATE=${1:?usage: stop.sh STATE_DIR [--clean]}
PIDS="$STATE/pids"
[ -f "$PIDS" ] || { echo "slurm-local: no $PIDS: nothing was started from $STATE" >&2; exit 0; }

if [ -f "$STATE/slurm.conf" ] && command -v scancel >/dev/null; then
  export SLURM_CONF="$STATE/slurm.conf"
  if scontrol ping >/dev/null 2>&1; then
    scancel --full --quiet $(squeue -h -o %A 2>/dev/null) 2>/dev/null
    for _ in $(seq 60); do  # let slurmd end the job steps it started
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 1
    done
  fi
fi

ours() { # ours PID NAME: is PID still the daemon NAME that start.sh started?
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "$2"
}

tac "$PIDS" | while read -r pid name; do
  ours "$pid" "$name" || continue
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 40); do ours "$pid" "$name" || break; sleep 0.5; done
  if ours "$pid" "$name"; then kill -KILL "$pid" 2>/dev/null; fi
  echo "slurm-local: stopped $name (pid $pid)"
done
: >"$PIDS"
if [ "${2:-}" = "--clean" ]; then rm -rf "$STATE"; fi
