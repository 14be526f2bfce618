#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for `make slurm-check` and for trying profiles/slurm by hand:
# munged, MariaDB, slurmdbd (job accounting: sacct), slurmctld and slurmd, all run from one state folder
# with their own ports and munge socket, so a system SLURM or munge on the same machine is not touched.
#
#   scripts/slurm-local.sh up        # start (from a fresh state folder); needs root
#   scripts/slurm-local.sh status    # what is running; exit 0 all up, 3 all down, 1 partly
#   scripts/slurm-local.sh env       # the line to eval in a shell: export SLURM_CONF=...
#   scripts/slurm-local.sh down      # cancel the jobs, stop every daemon; nothing of it keeps running
#
# Debian packages: slurm-wlm (slurmctld, slurmd, slurm-client, munge), slurmdbd, mariadb-server.
# Environment: PREDICTGS_SLURM_DIR (state folder, default /tmp/predictgs-slurm), PREDICTGS_SLURM_PORT
# (first of four TCP ports on 127.0.0.1: slurmctld, slurmd, slurmdbd, MariaDB; default 16817),
# PREDICTGS_SLURM_USER (the user given the SLURM account; default $SUDO_USER, else the caller).
# The node is declared with the CPUs and memory that `slurmd -C` reports for this machine, in one
# partition `cpu` (default); the account `predictgs` exists in the accounting database.
set -euo pipefail

PROG=slurm-local.sh
DIR=${PREDICTGS_SLURM_DIR:-/tmp/predictgs-slurm}
PORT=${PREDICTGS_SLURM_PORT:-16817}
CLUSTER=predictgs-local
PARTITION=cpu
ACCOUNT=predictgs
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # stop order; started in reverse

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "$PROG: $*" >&2
    exit 2
}

# command -> Debian package that provides it
declare -A PACKAGE=(
    [munged]=munge [slurmctld]=slurmctld [slurmd]=slurmd [slurmdbd]=slurmdbd
    [sbatch]=slurm-client [sacct]=slurm-client [sacctmgr]=slurm-client [scontrol]=slurm-client
    [sinfo]=slurm-client [squeue]=slurm-client [scancel]=slurm-client
    [mariadbd]=mariadb-server [mariadb-install-db]=mariadb-server [mariadb]=mariadb-client
)

check_packages() {  # pure bash: runs with any PATH
    local -A missing=()
    local cmd
    for cmd in "${!PACKAGE[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing[${PACKAGE[$cmd]}]=1
    done
    if ((${#missing[@]})); then
        die "missing Debian packages: ${!missing[*]} (sudo apt-get install -y slurm-wlm slurmdbd mariadb-server)"
    fi
}

export PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$DIR/etc/slurm.conf

pid_of() {  # pid of a daemon started here, if it is alive
    local file=$DIR/run/$1.pid pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc 0-9 <"$file")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    local end=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            echo "$PROG: timed out after ${seconds}s waiting for $what" >&2
            return 1
        fi
        sleep 0.5
    done
}

node_line() {  # this machine as slurmd -C sees it: NodeName=... CPUs=... RealMemory=...
    slurmd -C | head -1
}

write_configs() {
    local node cpus memory hostname
    node=$(node_line)
    hostname=$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$node")
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    [[ -n $hostname && -n $cpus && -n $memory ]] || die "cannot read CPUs and memory from 'slurmd -C': $node"
    "$(dirname "$0")/slurm_conf.py" --dir "$DIR" --port "$PORT" --cluster "$CLUSTER" --partition "$PARTITION" \
        --node "$node" --out "$DIR/etc"
}

start_mariadb() {
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=socket \
        --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
        || { tail -5 "$DIR/log/mariadb-install.log" >&2; return 1; }
    mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" \
        --port=$((PORT + 3)) --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadbd.pid" \
        --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 --skip-name-resolve >/dev/null 2>&1 &
    wait_for 60 "MariaDB" mariadb --no-defaults -S "$DIR/run/mysql.sock" -u root -e "SELECT 1"
    local password
    password=$(sed -n 's/^StoragePass=//p' "$DIR/etc/slurmdbd.conf")
    mariadb --no-defaults -S "$DIR/run/mysql.sock" -u root -e "
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        CREATE DATABASE slurm_acct_db;"
}

# Where SLURM commands look for slurm.conf without SLURM_CONF: /etc/slurm/slurm.conf, then
# /run/slurm/conf/slurm.conf (the link a configless slurmd makes to its cached configuration). Jobs need
# the second: the executor's job step (snakemake-executor-plugin-slurm-jobstep) removes SLURM_CONF from
# the environment of the `srun` it starts inside each job.
RUN_CONF=/run/slurm/conf

link_conf() {
    if [[ -e /etc/slurm/slurm.conf ]]; then
        die "/etc/slurm/slurm.conf exists: this machine has a SLURM configuration already; not starting a second"
    fi
    if [[ -e $RUN_CONF || -L $RUN_CONF ]] && [[ $(readlink "$RUN_CONF") != "$DIR/etc" ]]; then
        die "$RUN_CONF exists and is not ours (a configless slurmd runs here?); not starting a second SLURM"
    fi
    mkdir -p "$(dirname "$RUN_CONF")"
    ln -sfn "$DIR/etc" "$RUN_CONF"
}

unlink_conf() {
    if [[ -L $RUN_CONF && $(readlink "$RUN_CONF") == "$DIR/etc" ]]; then
        rm -f "$RUN_CONF"
        rmdir "$(dirname "$RUN_CONF")" 2>/dev/null || true
    fi
}

start() {
    check_packages
    [[ $(id -u) == 0 ]] || die "up needs root (slurmd starts jobs as their users): sudo $0 up"
    if [[ $(overall) != down ]]; then
        die "already (partly) running from $DIR; run '$0 down' first"
    fi
    link_conf
    rm -rf "$DIR"
    mkdir -p "$DIR"/{etc,run,log,munge,mysql,spool/ctld,spool/d}
    chmod 700 "$DIR/munge"
    chmod 755 "$DIR" "$DIR/run"
    trap 'echo "$PROG: start failed; logs in $DIR/log" >&2; stop >/dev/null 2>&1 || true' ERR

    write_configs

    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$DIR/munge/munge.key" --force
    else
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/run/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 10 munged test -S "$DIR/run/munge.socket"

    start_mariadb

    slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    local user=${PREDICTGS_SLURM_USER:-${SUDO_USER:-$(id -un)}}
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="predictgs slurm-check" \
        Organization=predictgs >/dev/null
    sacctmgr -i add user "$user" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
    [[ $user == root ]] || sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null

    slurmctld
    wait_for 60 slurmctld scontrol ping
    slurmd -N "$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$(node_line)")"
    wait_for 60 "the node to become idle" bash -c "sinfo -h -o %T | grep -qx idle"
    trap - ERR
    echo "$PROG: up: cluster $CLUSTER, partition $PARTITION, account $ACCOUNT ($user); $(node_line | grep -o 'CPUs=[0-9]*') $(node_line | grep -o 'RealMemory=[0-9]*') MB"
    echo "$PROG: to use it in a shell: eval \"\$($0 env)\""
}

daemon_state() {  # "<name> <pid|->"
    local name
    for name in "${DAEMONS[@]}"; do
        echo "$name $(pid_of "$name" || echo -)"
    done
}

overall() {
    local up=0 total=0 name pid
    while read -r name pid; do
        total=$((total + 1))
        [[ $pid != - ]] && up=$((up + 1))
    done < <(daemon_state)
    if ((up == total)); then echo up; elif ((up == 0)); then echo down; else echo partial; fi
}

our_processes() {  # pids of processes holding files under $DIR open (daemons, job step daemons)
    local fd pid
    for fd in /proc/[0-9]*/fd/*; do
        [[ $(readlink "$fd" 2>/dev/null) == "$DIR"/* ]] || continue
        pid=${fd#/proc/}
        echo "${pid%%/*}"
    done | sort -un | grep -vx "$$" || true
}

stop() {
    if [[ -d $DIR ]] && pid_of slurmctld >/dev/null; then
        scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
        wait_for 30 "the jobs to end" bash -c '[[ -z $(squeue -h -o %i) ]]' || true
    fi
    local name pid end
    for name in "${DAEMONS[@]}"; do
        pid=$(pid_of "$name") || continue
        kill "$pid" 2>/dev/null || true
        end=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.3; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    done
    if [[ -d $DIR ]]; then
        local left
        left=$(our_processes)
        if [[ -n $left ]]; then
            kill $left 2>/dev/null || true
            sleep 2
            left=$(our_processes)
            [[ -z $left ]] || kill -9 $left 2>/dev/null || true
        fi
    fi
    unlink_conf
    echo "$PROG: down (logs and database files stay in $DIR until the next 'up')"
}

status() {
    local state
    state=$(overall)
    echo "state: $state ($DIR)"
    daemon_state | while read -r name pid; do
        if [[ $pid == - ]]; then echo "  $name: not running"; else echo "  $name: pid $pid"; fi
    done
    if [[ $state == up ]]; then
        sinfo -h -o "  partition %P  nodes %D  state %T  cpus %c  memory %m MB"
        echo "  jobs in queue: $(squeue -h | wc -l)"
    fi
    case $state in up) return 0 ;; down) return 3 ;; *) return 1 ;; esac
}

case ${1:-} in
    up) start ;;
    down) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    -h | --help | help) usage ;;
    "") die "missing command (up, down, status or env; --help)" ;;
    *) die "unknown command '$1' (up, down, status or env)" ;;
esac
