#!/usr/bin/env python3
"""Write slurm.conf and slurmdbd.conf of the one-node test cluster of scripts/slurm-local.sh.

The node is declared with the figures `slurmd -C` prints for this machine (CPUs, sockets, cores, threads,
RealMemory), so the scheduler hands out exactly the CPUs and memory the machine has. Every daemon keeps its
files under --dir and listens on 127.0.0.1 from --port on, so nothing of a system installation is used.

    scripts/slurm_conf.py --dir /tmp/predictgs-slurm --node "$(slurmd -C | head -1)" --out /tmp/predictgs-slurm/etc
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

NODE_KEYS = ("NodeName", "CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
REQUIRED = ("NodeName", "CPUs", "RealMemory")


def parse_node_line(line: str) -> dict[str, str]:
    """`slurmd -C`'s first line ("NodeName=vm CPUs=2 ... RealMemory=24105") as a dict; ValueError if a
    required figure is missing."""
    fields = dict(re.findall(r"(\w+)=(\S+)", line))
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        raise ValueError(f"not a 'slurmd -C' line (no {', '.join(missing)}): {line.strip()!r}")
    for key in NODE_KEYS[1:]:
        if key in fields and not fields[key].isdigit():
            raise ValueError(f"{key}={fields[key]} is not a number in {line.strip()!r}")
    if int(fields["CPUs"]) < 1 or int(fields["RealMemory"]) < 1:
        raise ValueError(f"no CPUs or no memory in {line.strip()!r}")
    return {key: fields[key] for key in NODE_KEYS if key in fields}


def slurm_conf(node: dict[str, str], state_dir: str, port: int, cluster: str, partition: str) -> str:
    d = state_dir.rstrip("/")
    name = node["NodeName"]
    node_figures = " ".join(f"{key}={node[key]}" for key in NODE_KEYS[1:] if key in node)
    return f"""\
# One-node test cluster of scripts/slurm-local.sh (generated; rewritten by every `up`).
ClusterName={cluster}
SlurmctldHost={name}(127.0.0.1)
SlurmctldPort={port}
SlurmdPort={port + 1}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/run/munge.socket
StateSaveLocation={d}/spool/ctld
SlurmdSpoolDir={d}/spool/d
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
# no cgroups (containers, CI machines): processes are tracked by parentage, CPUs are not pinned
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=10
# jobs stay visible to squeue/scontrol for 10 minutes after they end; sacct keeps them for good
MinJobAge=600
# accounting through slurmdbd: sacct is what snakemake-executor-plugin-slurm asks for job states
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={port + 2}
# the munge socket for connections to slurmdbd (AuthInfo covers the others)
AccountingStoragePass={d}/run/munge.socket
# keep sbatch --comment (the executor writes the rule and wildcards there) in the job records
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobCompType=jobcomp/none
NodeName={name} NodeAddr=127.0.0.1 {node_figures} State=UNKNOWN
PartitionName={partition} Nodes={name} Default=YES MaxTime=INFINITE State=UP
"""


def slurmdbd_conf(state_dir: str, port: int, password: str) -> str:
    d = state_dir.rstrip("/")
    return f"""\
# slurmdbd of scripts/slurm-local.sh (generated; must be mode 600).
AuthType=auth/munge
AuthInfo=socket={d}/run/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={port + 2}
SlurmUser=root
LogFile={d}/log/slurmdbd.log
PidFile={d}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={port + 3}
StorageUser=slurm
StoragePass={password}
StorageLoc=slurm_acct_db
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="state folder of the cluster (absolute path)")
    parser.add_argument("--node", required=True, help="the first line of `slurmd -C`")
    parser.add_argument("--out", required=True, help="folder to write slurm.conf and slurmdbd.conf to")
    parser.add_argument("--port", type=int, default=16817,
                        help="first of four ports: slurmctld, slurmd, slurmdbd, MariaDB (default 16817)")
    parser.add_argument("--cluster", default="predictgs-local", help="ClusterName (default predictgs-local)")
    parser.add_argument("--partition", default="cpu", help="name of the one partition (default cpu)")
    args = parser.parse_args(argv)
    prog = Path(sys.argv[0]).name
    if not os.path.isabs(args.dir):
        print(f"{prog}: --dir must be an absolute path: {args.dir}", file=sys.stderr)
        return 2
    if not 1024 <= args.port <= 65532:
        print(f"{prog}: --port must be between 1024 and 65532: {args.port}", file=sys.stderr)
        return 2
    try:
        node = parse_node_line(args.node)
    except ValueError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "slurm.conf").write_text(slurm_conf(node, args.dir, args.port, args.cluster, args.partition))
    dbd = out / "slurmdbd.conf"
    dbd.touch(mode=0o600)
    dbd.chmod(0o600)
    dbd.write_text(slurmdbd_conf(args.dir, args.port, secrets.token_hex(16)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
