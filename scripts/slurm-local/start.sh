#!/usr/bin/env bash
# Stand up a single-node Slurm cluster (Debian's Slurm 22.05 with slurmdbd accounting) on this
# machine, as root, from nothing: install the packages, write every config under STATE_DIR, start
# munged, mariadbd, slurmdbd, slurmctld and slurmd directly (no systemd), record their PIDs in
# STATE_DIR/pids and wait until `sinfo` shows the node idle. stop.sh STATE_DIR stops exactly those.
#
#   scripts/slurm-local/start.sh STATE_DIR      then: export SLURM_CONF=STATE_DIR/slurm.conf
#
# Exit 3 (one line on stderr) where it cannot run: not root, or no apt-get.
set -euo pipefail

STATE=${1:?usage: start.sh STATE_DIR (an empty or new folder; stop.sh STATE_DIR undoes it)}
CLUSTER=repro
DB_PORT=${SLURM_LOCAL_DB_PORT:-3307}
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "slurm-local: needs root and apt-get (a Debian machine) to install and start Slurm; skipped" >&2
  exit 3
fi
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
chmod 755 "$STATE"  # munge and mysql reach their folders in it (mktemp -d makes it 0700)
if [ -s "$STATE/pids" ]; then
  echo "slurm-local: $STATE/pids exists: a cluster was started from $STATE; run stop.sh $STATE first" >&2
  exit 2
fi
mkdir -p "$STATE"/{log,ctld,spool,db}
: >"$STATE/pids"

log() { echo "slurm-local: $*"; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  # no daemon may start from a package's postinst (no init here anyway); our own start below
  printf '#!/bin/sh\nexit 101\n' >"$STATE/policy-rc.d" && chmod +x "$STATE/policy-rc.d"
  local policy=/usr/sbin/policy-rc.d
  [ -e $policy ] || { cp "$STATE/policy-rc.d" $policy && echo $policy >"$STATE/policy-created"; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1 || {
    apt-get update -q >>"$STATE/log/apt.log" 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1
  }
  if [ -f "$STATE/policy-created" ]; then rm -f $policy "$STATE/policy-created"; fi
}

# start NAME CMD...: run CMD in the background (in the foreground mode of the daemon), PID recorded
start() {
  local name=$1; shift
  "$@" >"$STATE/log/$name.out" 2>&1 </dev/null &
  echo "$! $name" >>"$STATE/pids"
  log "started $name (pid $!)"
}

# wait_for WHAT SECONDS CMD...: until CMD succeeds, or fail with the logs' tails
wait_for() {
  local what=$1 seconds=$2; shift 2
  local end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "slurm-local: $what not ready after ${seconds}s; logs in $STATE/log:" >&2
      tail -n 5 "$STATE"/log/*.out "$STATE"/log/*.log >&2 || true
      exit 1
    fi
    sleep 1
  done
}

start_munge() {
  [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 "$STATE/munge"
  start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
    --socket=/run/munge/munge.socket.2 --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
  wait_for munged 20 munge -n
}

start_mariadb() {
  chown mysql:mysql "$STATE/db"
  mariadb-install-db --user=mysql --datadir="$STATE/db/data" --auth-root-authentication-method=socket \
    --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
  start mariadbd mariadbd --no-defaults --user=mysql --datadir="$STATE/db/data" \
    --socket="$STATE/db/mysqld.sock" --pid-file="$STATE/db/mysqld.pid" --bind-address=127.0.0.1 \
    --port="$DB_PORT" --innodb-buffer-pool-size=64M --log-error="$STATE/log/mariadb.log"
  wait_for mariadbd 60 mariadb --no-defaults -S "$STATE/db/mysqld.sock" -u root -e "select 1"
  mariadb --no-defaults -S "$STATE/db/mysqld.sock" -u root -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-local';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

write_configs() {
  local node host=$(hostname)
  # the node as slurmd sees it (CPUs, sockets, cores, threads), a little under its real memory
  node=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]*//' -e 's/ RealMemory=[0-9]*//')
  local mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 8 / 10 ))
  cat >"$STATE/slurm.conf" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire (default 120 s); 10 s keeps the tests short
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
JobRequeue=1
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MinJobAge=600
KillWait=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=$host $node RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  cat >"$STATE/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm-local
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
CONF
  chmod 600 "$STATE/slurmdbd.conf"
}

install_packages
start_munge
start_mariadb
write_configs
export SLURM_CONF="$STATE/slurm.conf"  # the daemons find slurmdbd.conf beside it
start slurmdbd slurmdbd -D
wait_for slurmdbd 60 sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
start slurmctld slurmctld -D -i
wait_for slurmctld 60 scontrol ping
start slurmd slurmd -D -N localhost
wait_for "the node (idle in sinfo)" 90 sh -c "sinfo -h -N -o %t | grep -qx idle"
log "ready: export SLURM_CONF=$SLURM_CONF; stop with scripts/slurm-local/stop.sh $STATE"
