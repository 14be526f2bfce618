#!/usr/bin/env python3
"""`make slurm-check`: the workflow through a live one-node SLURM (scripts/slurm-local.sh), checked.

Brings the local cluster up (unless one is running already), then, on the reduced embedded configuration
config/slurm_check.yaml (one synthetic scene, two runs):

1. local run: `snakemake --cores N reproduce_tables` (the reference tables and wall time);
2. SLURM run: `snakemake --workflow-profile <profiles/slurm + site settings> --cores N reproduce_tables`;
   the tables must equal the local ones (timing columns excepted) and every job must be in the accounting
   records (sacct) with the CPUs, memory, time limit, account and partition that the profile asks for;
   the local rules (aggregation) must not be;
3. GPU requests: the sbatch calls the executor makes for the GPU rules of config/paper.yaml (recorded by
   stand-in sbatch/sinfo/... commands: this node has no GPU) and a dry run of the whole paper DAG;
4. scancel: a training job cancelled with `--retries 0` is reported failed; the rerun submits exactly the
   jobs a dry run lists as missing, training resumes from its checkpoint, and a second cancelled training
   job is retried (profile: retries 1); the tables again equal the local ones.

The cluster is brought down at the end, also on failure or Ctrl-C. Writes <workdir>/report.json and
<workdir>/report.md; exit status 0 when every check passed, 1 when one failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SLURM_LOCAL = REPO / "scripts" / "slurm-local.sh"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
CHECK_CONFIG = REPO / "config" / "slurm_check.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
PROG = "slurm_check.py"

# Values of scripts/slurm-local.sh
ACCOUNT = "predictgs"
PARTITION = "cpu"

# Table columns (and, in long tables, values of the `metric` column) that are measurements of time or speed:
# they differ between any two runs, so they are left out of the local/SLURM comparison.
TIMING = re.compile(r"seconds|time|fps", re.I)
# Rules whose jobs declare resources gpu=1 when the configuration's device is cuda (workflow/rules/runs.smk).
# After scancel, snakemake must notice the cancelled job and stop within this time.
CANCEL_NOTICE_SECONDS = 900
GPU_RULES = ("train", "encode", "decode", "evaluate_decoded")
SACCT_FIELDS = ("JobIDRaw", "JobName", "State", "ReqCPUS", "AllocCPUS", "ReqMem", "Timelimit", "Account",
                "Partition", "ReqTRES", "AllocTRES", "Elapsed", "Submit", "Start", "End", "ExitCode", "Comment")


class CheckError(Exception):
    """Bad input or a broken precondition: one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------------
# Pure pieces (tests/test_slurm.py runs them on fixtures, without SLURM)


def parse_timelimit(text: str) -> int:
    """SLURM time ("2:00:00", "1-00:00:00", "30:00", "UNLIMITED") -> minutes (-1 for unlimited)."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return -1
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    else:
        raise ValueError(f"not a SLURM time: {text!r}")
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def parse_seconds(text: str) -> int:
    """SLURM elapsed time ("00:01:02", "1-00:00:00") -> seconds."""
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return days * 86400 + seconds


def parse_mem_mb(text: str) -> int:
    """sacct ReqMem ("8000M", "12G", "1000Mc", "4Gn") -> MB per job (per-CPU values are not expected)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)([nc]?)", text.strip())
    if not match:
        raise ValueError(f"not a sacct memory figure: {text!r}")
    value, unit, per = match.groups()
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    if per == "c":
        raise ValueError(f"memory per CPU ({text}) where memory per job was asked for")
    return round(float(value) * factor)


def parse_sacct(text: str, fields=SACCT_FIELDS) -> list[dict[str, str]]:
    """`sacct -X --parsable2 --noheader --format=<fields>` output -> one dict per job."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|")
        if len(values) != len(fields):
            raise ValueError(f"sacct line with {len(values)} fields instead of {len(fields)}: {line!r}")
        rows.append(dict(zip(fields, values)))
    return rows


def comment_key(rule: str, wildcards: dict[str, str]) -> str:
    """The --comment snakemake-executor-plugin-slurm gives a job: rule_<rule>[_wildcards_<values joined by _>]."""
    values = "_".join(wildcards.values()).replace("/", "_")
    return f"rule_{rule}_wildcards_{values}" if values else f"rule_{rule}"


def parse_dry_run(output: str) -> list[dict]:
    """The jobs a `snakemake -n` run prints: rule, local (localrule), wildcards, threads, resources, key."""
    jobs = []
    job = None
    for line in output.splitlines():
        head = re.match(r"^(local)?rule (\w+):\s*$", line)
        if head:
            job = {"rule": head.group(2), "local": bool(head.group(1)), "wildcards": {}, "threads": 1,
                   "resources": {}}
            jobs.append(job)
            continue
        if job is None:
            continue
        if not line.startswith("    "):  # "Shell command:", "[date]", "Job stats:" ... end the job's block
            job = None
            continue
        field = re.match(r"^    (\w+): (.*)$", line)
        if not field:
            continue
        key, value = field.groups()
        if key == "wildcards":
            job["wildcards"] = dict(item.split("=", 1) for item in value.split(", "))
        elif key == "threads":
            job["threads"] = int(value)
        elif key == "resources":
            for item in value.split(", "):
                name, _, text = item.partition("=")
                job["resources"][name] = int(text) if re.fullmatch(r"-?\d+", text) else text
    for job in jobs:
        job["key"] = comment_key(job["rule"], job["wildcards"])
    return jobs


def snakefile_localrules(snakefile: Path = SNAKEFILE) -> set[str]:
    """The rules of the Snakefile's `localrules:` directive (they run on the submitting host). A dry run
    prints every job as `rule`, so this list says which jobs are local."""
    match = re.search(r"^localrules:\s*\n((?:[ \t]+[\w, \t]*\n)+)", snakefile.read_text(), re.M)
    if not match:
        return set()
    return {name for name in re.split(r"[\s,]+", match.group(1)) if name}


def mark_local(jobs: list[dict], local_rules: set[str]) -> list[dict]:
    for job in jobs:
        job["local"] = job["rule"] in local_rules
    return jobs


def job_stats(output: str) -> Counter:
    """The "Job stats" table of a snakemake run: rule -> number of jobs."""
    match = re.search(r"Job stats:\s*\njob\s+count\s*\n[-\s]+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    if not match:
        return Counter()
    return Counter({name: int(count) for name, count in (line.split() for line in match.group(1).splitlines())})


def profile_resources(profile: dict, rule: str) -> dict:
    """mem_mb, runtime (and site keys) a profile gives a rule: default-resources updated by set-resources."""
    resources = dict(profile.get("default-resources") or {})
    resources.update((profile.get("set-resources") or {}).get(rule) or {})
    return resources


def check_job_records(records: list[dict], jobs: list[dict], profile: dict, *, gpu: bool) -> list[str]:
    """Problems found comparing sacct records with the jobs of a dry run and the profile (empty: all good).

    Every non-local job must have exactly one record per key (rule + wildcards), COMPLETED, with ReqCPUS =
    threads, ReqMem = mem_mb, Timelimit = runtime, the profile's account and partition, and a GPU in its
    TRES only when `gpu`; local jobs must have none.
    """
    problems = []
    remote = {job["key"]: job for job in jobs if not job["local"]}
    local = {job["key"] for job in jobs if job["local"]}
    by_key: dict[str, list[dict]] = {}
    for record in records:
        by_key.setdefault(record["Comment"], []).append(record)
    for key in sorted(set(by_key) - set(remote)):
        what = "a local rule's job" if key in local else "a job the dry run did not list"
        problems.append(f"{key}: {what} went through sbatch ({len(by_key[key])} record(s))")
    for key, job in sorted(remote.items()):
        found = by_key.get(key, [])
        if len(found) != 1:
            problems.append(f"{key}: {len(found)} accounting records instead of 1")
            continue
        record = found[0]
        wanted = profile_resources(profile, job["rule"])
        mem_mb = job["resources"].get("mem_mb")
        runtime = job["resources"].get("runtime")
        checks = [
            ("State", record["State"], "COMPLETED"),
            ("ReqCPUS (threads)", int(record["ReqCPUS"]), job["threads"]),
            ("ReqMem [MB] (dry run mem_mb)", parse_mem_mb(record["ReqMem"]), mem_mb),
            ("ReqMem [MB] (profile mem_mb)", parse_mem_mb(record["ReqMem"]), wanted.get("mem_mb")),
            ("Timelimit [min] (dry run runtime)", parse_timelimit(record["Timelimit"]), runtime),
            ("Timelimit [min] (profile runtime)", parse_timelimit(record["Timelimit"]), wanted.get("runtime")),
        ]
        if wanted.get("slurm_account"):
            checks.append(("Account", record["Account"], str(wanted["slurm_account"]).lower()))
        if wanted.get("slurm_partition"):
            checks.append(("Partition", record["Partition"], str(wanted["slurm_partition"])))
        has_gpu = "gres/gpu" in record["ReqTRES"]
        checks.append(("GPU in ReqTRES", has_gpu, gpu and job["rule"] in GPU_RULES))
        for name, got, expected in checks:
            if expected is not None and got != expected:
                problems.append(f"{key} (job {record['JobIDRaw']}): {name} is {got!r}, expected {expected!r}")
    return problems


def sbatch_options(call: str) -> dict[str, str]:
    """Options of an sbatch command line (without --wrap's script): {"--mem": "48000", "--gpus": "1", ...}."""
    call = call.split(" --wrap=", 1)[0]
    words = shlex.split(call)
    if words and Path(words[0]).name == "sbatch":
        words = words[1:]
    options: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-") and "=" in word:
            name, value = word.split("=", 1)
            options[name] = value
        elif word.startswith("-") and index + 1 < len(words) and not words[index + 1].startswith("-"):
            options[word] = words[index + 1]
            index += 1
        elif word.startswith("-"):
            options[word] = ""
        index += 1
    return options


def check_gpu_calls(calls: list[str], profile: dict, threads: int, expect: str = "--gpus=1") -> tuple[dict, list[str]]:
    """Per rule, the sbatch options of the recorded calls, and the problems: GPU rules must ask for the GPU
    as `expect` ("--gpus=1", "--gpus=a100:1" or "--gres=gpu:1") with --cpus-per-task=threads, the profile's
    memory and time limit and no --ntasks; other rules must not ask for a GPU."""
    problems = []
    seen = {}
    for call in calls:
        options = sbatch_options(call)
        comment = options.get("--comment", "")
        rule = next((r for r in sorted(GPU_RULES + ("scene_info", "synth_scene"), key=len, reverse=True)
                     if comment == f"rule_{r}" or comment.startswith(f"rule_{r}_wildcards_")), None)
        if rule is None:
            problems.append(f"sbatch call without a known rule in --comment: {comment!r}")
            continue
        seen.setdefault(rule, options)
        wanted = profile_resources(profile, rule)
        gpu_options = {k: v for k, v in options.items() if k in ("--gpus", "--gres")}
        if rule in GPU_RULES:
            name, _, value = expect.partition("=")
            if gpu_options != {name: value}:
                problems.append(f"{rule}: GPU options {gpu_options}, expected {{{name!r}: {value!r}}}")
            if options.get("--cpus-per-task") != str(threads):
                problems.append(f"{rule}: --cpus-per-task={options.get('--cpus-per-task')}, expected {threads}")
            if "--ntasks" in options:
                problems.append(f"{rule}: --ntasks={options['--ntasks']} in a GPU job")
        elif gpu_options:
            problems.append(f"{rule}: asks for a GPU ({gpu_options}) but is not a GPU rule")
        if options.get("--mem") != str(wanted.get("mem_mb")):
            problems.append(f"{rule}: --mem {options.get('--mem')}, expected {wanted.get('mem_mb')}")
        if options.get("-t") != str(wanted.get("runtime")):
            problems.append(f"{rule}: -t {options.get('-t')}, expected {wanted.get('runtime')}")
    return seen, problems


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def compare_tables(reference: Path, other: Path) -> tuple[list[str], list[str], list[str]]:
    """Compare every CSV under `reference` with the same file under `other`, cell by cell as text, leaving
    out timing columns (TIMING) and, in long tables, rows whose `metric` is a timing.
    Returns (files compared, timing columns left out as "file: column", problems)."""
    files, excluded, problems = [], set(), []
    for path in sorted(reference.rglob("*.csv")):
        relative = path.relative_to(reference)
        files.append(str(relative))
        twin = other / relative
        if not twin.exists():
            problems.append(f"{relative}: missing")
            continue
        rows_a, rows_b = read_csv(path), read_csv(twin)
        columns = list(rows_a[0]) if rows_a else []
        if rows_b and list(rows_b[0]) != columns:
            problems.append(f"{relative}: columns differ")
            continue
        if len(rows_a) != len(rows_b):
            problems.append(f"{relative}: {len(rows_a)} rows vs {len(rows_b)}")
            continue
        timing = [c for c in columns if TIMING.search(c)]
        excluded.update(f"{relative}: {c}" for c in timing)
        for index, (a, b) in enumerate(zip(rows_a, rows_b)):
            if "metric" in a and TIMING.search(a["metric"]):
                excluded.add(f"{relative}: metric={a['metric']} rows")
                continue
            for column in columns:
                if column not in timing and a[column] != b[column]:
                    problems.append(f"{relative} row {index + 1} {column}: {a[column]!r} vs {b[column]!r}")
    if not files:
        problems.append(f"no tables under {reference}")
    return files, sorted(excluded), problems


def site_profile(profile: dict, *, account: str, partition: str, node_mem_mb: int,
                 status_seconds: int | None) -> tuple[dict, list[str]]:
    """profiles/slurm/config.yaml as a site would adapt it to this one-node cluster, and the changes made:
    account and partition as default resources; memory requests larger than half the node's memory cut to
    half (two single-thread jobs share the node); optionally a shorter first status check."""
    site = yaml.safe_load(yaml.safe_dump(profile))
    changes = [f"default-resources: slurm_account={account}, slurm_partition={partition}"]
    site.setdefault("default-resources", {}).update(slurm_account=account, slurm_partition=partition)
    cap = node_mem_mb // 2
    for scope, entries in [("default-resources", {"": site["default-resources"]}),
                           ("set-resources", site.get("set-resources") or {})]:
        for rule, resources in entries.items():
            if resources and int(resources.get("mem_mb", 0)) > cap:
                where = f"{scope}.{rule}" if rule else scope
                changes.append(f"{where}: mem_mb {resources['mem_mb']} -> {cap} (the node has {node_mem_mb} MB)")
                resources["mem_mb"] = cap
    if status_seconds is not None:
        site["slurm-init-seconds-before-status-checks"] = status_seconds
        changes.append(f"slurm-init-seconds-before-status-checks: {status_seconds} (plugin default 40): "
                       "short jobs on an idle one-node cluster")
    return site, changes


# ---------------------------------------------------------------------------------------------------
# Commands


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def run(command, *, env=None, cwd=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CheckError(f"{shlex.join(map(str, command))} failed ({result.returncode}): "
                         f"{(result.stderr or result.stdout).strip().splitlines()[-1:] or ''}")
    return result


class Snakemake:
    """snakemake runs of one check, each logged to a file under the work folder."""

    def __init__(self, workdir: Path, env: dict):
        self.workdir = workdir
        self.env = env
        self.children: list[subprocess.Popen] = []
        self.load: dict[str, float | None] = {}  # run name -> mean 1-minute load average during the run

    def command(self, directory: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(directory),
                *args]

    def start(self, name: str, directory: Path, *args: str, env=None) -> tuple[subprocess.Popen, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")
        process = subprocess.Popen(self.command(directory, *args), stdout=handle, stderr=subprocess.STDOUT,
                                   env=env or self.env, start_new_session=True)
        handle.close()
        self.children.append(process)
        return process, path

    def wait(self, process: subprocess.Popen, timeout: float) -> int:
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(process)
            raise CheckError(f"snakemake did not finish within {timeout:.0f} s") from None

    def run(self, name: str, directory: Path, *args: str, timeout: float = 3600, env=None) -> tuple[int, str, float]:
        start = time.monotonic()
        process, path = self.start(name, directory, *args, env=env)
        load = []
        while True:  # sample the machine's load: other work on the machine changes every wall time
            try:
                code = process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                load.append(os.getloadavg()[0])
                if time.monotonic() - start > timeout:
                    self.stop(process)
                    raise CheckError(f"snakemake did not finish within {timeout:.0f} s") from None
        self.load[name] = round(sum(load) / len(load), 1) if load else None
        return code, path.read_text(), time.monotonic() - start

    def stop(self, process: subprocess.Popen, signal_number=signal.SIGINT, grace: float = 30) -> None:
        if process.poll() is not None:
            return
        try:
            process.send_signal(signal_number)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for process in self.children:
            self.stop(process)


def run_uuid(log_text: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", log_text)
    if not match:
        raise CheckError("the snakemake log names no SLURM run ID (did the slurm executor start?)")
    return match.group(1)


def sacct_records(uuid: str, env: dict, save: Path | None = None) -> list[dict[str, str]]:
    """The accounting records of one snakemake run (its jobs are named after the run's uuid)."""
    start = (dt.datetime.now() - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    result = run(["sacct", "-X", "--parsable2", "--noheader", f"--format={','.join(SACCT_FIELDS)}",
                  "--starttime", start, "--name", uuid], env=env)
    if save is not None:
        save.write_text(result.stdout)
    return parse_sacct(result.stdout)


def running_jobs(env: dict, rule: str) -> list[tuple[str, str]]:
    """(job id, comment) of the running jobs of a rule."""
    result = run(["squeue", "-h", "--states=RUNNING", "-o", "%i|%k"], env=env, check=False)
    jobs = []
    for line in result.stdout.splitlines():
        job_id, _, comment = line.partition("|")
        if comment.startswith(f"rule_{rule}_wildcards_") or comment == f"rule_{rule}":
            jobs.append((job_id.strip(), comment.strip()))
    return jobs


def wait_until(predicate, timeout: float, interval: float = 1.0, process: subprocess.Popen | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            return None
        time.sleep(interval)
    return None


# ---------------------------------------------------------------------------------------------------
# The GPU requests of config/paper.yaml, through stand-in SLURM commands


SHIM = """#!/bin/sh
# stand-in {name} of scripts/slurm_check.py: {what}
{body}
"""
SHIMS = {
    "sbatch": ("records the call and answers with a job id",
               'dir=$(dirname "$0")\nprintf "%s\\n" "$*" >> "$dir/sbatch_calls.txt"\n'
               'mkdir "$dir/lock" 2>/dev/null; n=$(wc -l < "$dir/sbatch_calls.txt"); rmdir "$dir/lock" 2>/dev/null\n'
               'echo $((900000 + n))'),
    "sinfo": ("one default partition", 'echo "PARTITION"; echo "gpu*"'),
    "sacct": ("no jobs known", "exit 0"),
    "squeue": ("no jobs known", "exit 0"),
    "scancel": ("nothing to cancel", "exit 0"),
    "sacctmgr": ("no accounts", "exit 0"),
    "scontrol": ("no configuration", "exit 0"),
}


def write_shims(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (what, body) in SHIMS.items():
        path = folder / name
        path.write_text(SHIM.format(name=name, what=what, body=body))
        path.chmod(0o755)
    return folder


def paper_fixture(root: Path, config: dict) -> tuple[Path, list[str]]:
    """Empty scene folders for config/paper.yaml, and files of four runs of one scene so that one job of
    each GPU rule is ready at once (train, encode, decode, evaluate_decoded) plus scene_info: the targets."""
    data = root / "datasets"
    for spec in config["benchmarks"].values():
        names = spec["scenes"]
        for folder in (names.values() if isinstance(names, dict) else names):
            (data / spec.get("root", "") / folder).mkdir(parents=True, exist_ok=True)
    benchmark = next(iter(config["benchmarks"]))
    spec = config["benchmarks"][benchmark]
    scene = next(iter(spec["scenes"]))
    method = "hac"
    lambdas = [f"{float(v):g}" for v in config["methods"][method]["lambdas"]]
    if len(lambdas) < 4:
        raise CheckError(f"{PAPER_CONFIG.name}: the GPU check needs four rate points of {method}")
    results = root / config["results_dir"]
    old = time.time() - 10_000
    stamp = iter(range(1, 100))

    def make(path: Path, directory=False):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(exist_ok=True) if directory else path.write_text("{}\n")
        moment = old + 100 * next(stamp)
        os.utime(path, (moment, moment))

    for folder in data.rglob("*"):
        os.utime(folder, (old, old))
    make(results / "configs" / benchmark / method / "default.yaml")
    run_dir = results / "runs" / benchmark / scene / method / "default"
    seed = (config.get("train_seeds") or [0])[0]
    trained, encoded, decoded, fresh = (run_dir / f"lambda{value}" / f"train_seed{seed}" for value in lambdas[:4])
    for done in (trained, encoded, decoded):
        make(done / "metrics.json")
        make(done / "per_view.json")
    for done in (encoded, decoded):
        make(done / "scene.pgs")
    make(decoded / "decoded", directory=True)
    targets = [fresh / "metrics.json", trained / "scene.pgs", encoded / "decoded", decoded / "decoded_metrics.json",
               results / "scene_info" / benchmark / f"{scene}.json"]
    return data, [str(t.relative_to(root)) for t in targets]


def record_gpu_calls(workdir: Path, env: dict, profile_dir: Path, extra: tuple[str, ...] = (),
                     timeout: float = 180, wanted: int | None = None,
                     log_has: str | None = None) -> tuple[list[str], str]:
    """Run the slurm executor on config/paper.yaml with stand-in SLURM commands until it has submitted the
    five ready jobs (one per GPU rule + scene_info), or `wanted` jobs once its log holds `log_has` (a
    profile the executor refuses for some rules); returns the recorded sbatch calls and the log."""
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    if workdir.exists():
        shutil.rmtree(workdir)
    data, targets = paper_fixture(workdir, config)
    shims = write_shims(workdir / "shims")
    calls_file = shims / "sbatch_calls.txt"
    shim_env = {**env, "PATH": f"{shims}{os.pathsep}{env['PATH']}"}
    shim_env.pop("SLURM_CONF", None)
    runner = Snakemake(workdir, shim_env)
    process, log_path = runner.start("gpu_calls", workdir, "--workflow-profile", str(profile_dir),
                                     "--configfile", str(PAPER_CONFIG), "--config", f"data_dir={data}",
                                     # the fixture's files have no snakemake metadata: judge them by time only
                                     "--rerun-triggers", "mtime", *extra, "--", *targets)
    wanted = len(targets) if wanted is None else wanted

    def recorded():
        if log_has is not None and (not log_path.exists() or log_has not in log_path.read_text()):
            return False
        return calls_file.exists() and len(calls_file.read_text().splitlines()) >= wanted

    wait_until(recorded, timeout, 0.5, process)
    time.sleep(1)
    # nothing was submitted: the stand-in jobs never end, so stop snakemake hard
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return calls, log_path.read_text()


def paper_dry_run(workdir: Path, env: dict, profile_dir: Path) -> tuple[list[dict], str]:
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    data, _ = paper_fixture(workdir / "dry", config)
    runner = Snakemake(workdir, env)
    code, output, _ = runner.run("paper_dry_run", workdir / "dry", "-n", "--workflow-profile", str(profile_dir),
                                 "--configfile", str(PAPER_CONFIG), "--config", f"data_dir={data}",
                                 # judge the fixture's files by time only: Snakemake's code trigger would
                                 # otherwise rerun them whenever a workflow script is newer than the fixture
                                 # (a fresh clone) and not otherwise (an old checkout)
                                 "--rerun-triggers", "mtime", "--", "reproduce_tables", timeout=600)
    if code != 0:
        raise CheckError(f"dry run of {PAPER_CONFIG.name} failed: {output.strip().splitlines()[-1:]}")
    return parse_dry_run(output), output


def check_paper_gpu(workdir: Path, env: dict) -> dict:
    """The GPU part of the check: a dry run of the paper DAG with profiles/slurm (gpu=1 on every job of the
    GPU rules, on no other) and the sbatch calls of one job per GPU rule."""
    profile = yaml.safe_load(PROFILE.read_text())
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    threads = config["threads"]["train"]
    jobs, _ = paper_dry_run(workdir, env, PROFILE.parent)
    mark_local(jobs, snakefile_localrules())
    problems = []
    counts = Counter(job["rule"] for job in jobs if not job["local"])
    for job in jobs:
        if job["local"]:
            continue
        gpu = job["resources"].get("gpu", 0)
        if (job["rule"] in GPU_RULES) != (gpu == 1):
            problems.append(f"dry run: {job['key']} has gpu={gpu}")
    calls, _ = record_gpu_calls(workdir / "calls", env, PROFILE.parent)
    seen, call_problems = check_gpu_calls(calls, profile, threads)
    missing = sorted(set(GPU_RULES) - set(seen))
    if missing:
        call_problems.append(f"no sbatch call recorded for {', '.join(missing)}")
    return {"dry_run_jobs": dict(counts), "sbatch_options": seen, "problems": problems + call_problems}


# ---------------------------------------------------------------------------------------------------
# The check


class Report:
    def __init__(self):
        self.checks: list[dict] = []
        self.data: dict = {}

    def add(self, name: str, ok: bool, detail: str = "", problems: list[str] | None = None) -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail, "problems": problems or []})
        log(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
        for problem in (problems or [])[:20]:
            log(f"     {problem}")
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)

    def write(self, workdir: Path) -> None:
        data = {"ok": self.ok, "checks": self.checks, **self.data}
        (workdir / "report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        lines = ["# make slurm-check", "", f"Result: **{'PASS' if self.ok else 'FAIL'}**", ""]
        for key in ("cluster", "versions", "site_profile_changes", "figures"):
            if key in self.data:
                lines += [f"## {key.replace('_', ' ').capitalize()}", ""]
                value = self.data[key]
                if isinstance(value, dict):
                    lines += [f"- {k}: {v}" for k, v in value.items()]
                else:
                    lines += [f"- {v}" for v in value]
                lines.append("")
        if "slurm_jobs" in self.data:
            lines += ["## Jobs of the SLURM run (sacct)", "",
                      "| job | rule / wildcards | state | CPUs | memory | time limit | account | partition | elapsed |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in self.data["slurm_jobs"]:
                lines.append(f"| {r['JobIDRaw']} | {r['Comment']} | {r['State']} | {r['ReqCPUS']} | {r['ReqMem']} | "
                             f"{r['Timelimit']} | {r['Account']} | {r['Partition']} | {r['Elapsed']} |")
            lines.append("")
        lines += ["## Checks", ""]
        for check in self.checks:
            lines.append(f"- {'PASS' if check['ok'] else 'FAIL'} {check['check']}"
                         + (f": {check['detail']}" if check["detail"] else ""))
            lines += [f"  - {p}" for p in check["problems"]]
        if "notes" in self.data:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.data["notes"]]
        (workdir / "report.md").write_text("\n".join(lines) + "\n")


NOTES = [
    "Local rules (train_config, run_summary and the aggregation rules: localrules in the Snakefile) run on "
    "the submitting host, not through sbatch; the check asserts that none of them reaches the scheduler.",
    "snakemake-executor-plugin-slurm-jobstep removes every SLURM_* variable but a few job ids from the "
    "environment of the srun it starts inside each job, SLURM_CONF included: srun then finds the "
    "configuration only at /etc/slurm/slurm.conf or /run/slurm/conf/slurm.conf. slurm-local.sh links "
    "/run/slurm/conf to its configuration, as a configless slurmd does.",
    "The test node has no GPU: the GPU requests of config/paper.yaml are checked on the sbatch calls the "
    "executor makes (recorded by stand-in SLURM commands) and on a dry run, not on running GPU jobs.",
    "Memory requests above half of the node's memory (the paper profile's 32-48 GB) are cut for the local "
    "cluster; every other resource is the profile's.",
    "Job states come from squeue (profiles/slurm: slurm-status-command: squeue): with the plugin's default, "
    "sacct, 2.8.0 does not recognise sacct's 'CANCELLED by <uid>' and waits forever for a job killed with "
    "scancel.",
]


def cluster_env(env: dict) -> dict:
    output = run([str(SLURM_LOCAL), "env"], env=env).stdout.strip()
    match = re.fullmatch(r"export SLURM_CONF=(\S+)", output)
    if not match:
        raise CheckError(f"unexpected output of slurm-local.sh env: {output!r}")
    return {**env, "SLURM_CONF": match.group(1)}


def node_figures(env: dict) -> tuple[int, int, str]:
    line = run(["scontrol", "show", "node", "-o"], env=env).stdout.strip().splitlines()[0]
    cpus = int(re.search(r"CPUTot=(\d+)", line).group(1))
    memory = int(re.search(r"RealMemory=(\d+)", line).group(1))
    summary = " ".join(re.findall(r"(?:NodeName|CPUTot|RealMemory|Partitions|Version)=\S+", line))
    return cpus, memory, summary


def as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "--preserve-env=PREDICTGS_SLURM_DIR,PREDICTGS_SLURM_PORT", *command]
    raise CheckError("starting the local SLURM needs root: run as root or with passwordless sudo")


def preflight() -> None:
    for command in ("sbatch", "sacct", "squeue", "scancel", "scontrol"):
        if shutil.which(command) is None:
            raise CheckError(f"{command} is not on the PATH: install the Debian packages "
                             "slurm-wlm slurmdbd mariadb-server (README, Running on a cluster)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        raise CheckError("snakemake-executor-plugin-slurm is not installed in this environment "
                         "(make install; it is pinned in requirements.txt)") from None


def slurm_run(report: Report, snake: Snakemake, workdir: Path, env: dict, profile_dir: Path, site: dict,
              config: Path, cores: int, timeout: float) -> float | None:
    directory = workdir / "slurm"
    args = ("--workflow-profile", str(profile_dir), "--configfile", str(config), "--cores", str(cores))
    code, dry, _ = snake.run("slurm_dry_run", directory, *args, "-n", "reproduce_tables", timeout=600)
    if code != 0:
        raise CheckError(f"dry run with the SLURM profile failed (log {workdir}/logs/slurm_dry_run.log)")
    jobs = mark_local(parse_dry_run(dry), snakefile_localrules())
    remote = Counter(j["rule"] for j in jobs if not j["local"])
    local = Counter(j["rule"] for j in jobs if j["local"])
    log(f"SLURM run: {sum(remote.values())} sbatch jobs ({dict(remote)}), {sum(local.values())} local")
    code, output, wall = snake.run("slurm", directory, *args, "reproduce_tables", timeout=timeout)
    report.add("SLURM run of reproduce_tables completes", code == 0, f"exit {code}, {wall:.0f} s wall")
    if code != 0:
        return None
    records = sacct_records(run_uuid(output), env, workdir / "logs" / "slurm_sacct.txt")
    report.data["slurm_jobs"] = records
    ran_local = {job["rule"] for job in parse_dry_run(output) if job["local"]}
    report.add("the run executed exactly the Snakefile's local rules locally", ran_local == set(local),
               f"localrule jobs in the log: {', '.join(sorted(ran_local))}")
    report.data["slurm_dry_run"] = {"sbatch_jobs": dict(remote), "local_jobs": dict(local)}
    problems = check_job_records(records, jobs, site, gpu=False)
    rules = sorted(remote)
    report.add("every non-local job is in the accounting records with the profile's resources",
               not problems, f"{len(records)} records for {sum(remote.values())} jobs of {', '.join(rules)}",
               problems)
    expected_rules = {"synth_scene", "scene_info", "train", "encode", "decode", "evaluate_decoded"}
    report.add("every non-local rule type went through sbatch", expected_rules <= set(remote)
               and expected_rules <= {r["Comment"].split("_wildcards_")[0][5:] for r in records},
               ", ".join(sorted(expected_rules)))
    report.add("no local rule went through sbatch", not (set(local) & set(remote)), ", ".join(sorted(local)))
    elapsed = sum(parse_seconds(r["Elapsed"]) for r in records)
    waits = [(dt.datetime.fromisoformat(r["Start"]) - dt.datetime.fromisoformat(r["Submit"])).total_seconds()
             for r in records]
    report.data.setdefault("figures", {}).update({
        "sbatch jobs (SLURM run)": len(records),
        "local-rule jobs (SLURM run)": sum(local.values()),
        "SLURM run wall time [s]": round(wall, 1),
        "SLURM run: mean load average": snake.load.get("slurm"),
        "sum of job run times in sacct [s]": elapsed,
        "queue wait per job, mean / max [s]": f"{sum(waits) / len(waits):.1f} / {max(waits):.0f}",
    })
    return wall


def cancel_scenario(report: Report, snake: Snakemake, workdir: Path, env: dict, profile_dir: Path,
                    config_path: Path, cores: int, timeout: float, local_tables: Path | None) -> None:
    """scancel a training job with --retries 0 (reported failed), rerun (only the missing jobs; resumes from
    the checkpoint) and scancel the rerun's training job once (retried)."""
    directory = workdir / "cancel"
    config = yaml.safe_load(config_path.read_text())
    results = directory / config["results_dir"]
    args = ("--workflow-profile", str(profile_dir), "--configfile", str(config_path), "--cores", str(cores))

    def run_dir(comment: str) -> Path | None:
        for job in parse_dry_run(snake_dry_text):
            if job["key"] == comment:
                w = job["wildcards"]
                return (results / "runs" / w["benchmark"] / w["scene"] / w["method"] / w["variant"]
                        / f"lambda{w['lmbda']}" / f"train_seed{w['train_seed']}")
        return None

    code, snake_dry_text, _ = snake.run("cancel_dry_run", directory, *args, "-n", "reproduce_tables", timeout=600)
    if code != 0:
        raise CheckError(f"dry run failed (log {workdir}/logs/cancel_dry_run.log)")

    # Phase 1: cancel a training job after its first checkpoint; with --retries 0 snakemake reports it.
    process, log_path = snake.start("cancel_phase1", directory, *args, "--retries", "0", "reproduce_tables")
    job = wait_until(lambda: running_jobs(env, "train"), timeout, 1.0, process)
    if not job:
        snake.stop(process)
        report.add("scancel: a training job was seen running", False, "no running train job")
        return
    job_id, comment = job[0]
    folder = run_dir(comment)
    checkpoint = wait_until(lambda: folder and (folder / "checkpoint.pt").exists(), 300, 0.5, process)
    run(["scancel", job_id], env=env)
    log(f"scancel {job_id} ({comment}){' after its first checkpoint' if checkpoint else ''}")
    try:
        code = snake.wait(process, min(timeout, CANCEL_NOTICE_SECONDS))
    except CheckError:
        report.add("scancel with --retries 0: the job is reported failed and snakemake stops with an error", False,
                   f"snakemake did not end within {CANCEL_NOTICE_SECONDS} s of scancel {job_id}: the executor did "
                   "not notice the cancellation (sacct status 'CANCELLED by <uid>'? see profiles/slurm)")
        return
    text = log_path.read_text()
    reported = re.search(rf"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'", text) is not None
    kept_log = list((directory / ".snakemake" / "slurm_logs" / "rule_train").rglob(f"{job_id}.log"))
    report.add("scancel with --retries 0: the job is reported failed and snakemake stops with an error",
               code != 0 and reported, f"job {job_id}, snakemake exit {code}, "
               f"{'CANCELLED reported' if reported else 'no CANCELLED message in the log'}")
    report.add("the cancelled job's SLURM log is kept", bool(kept_log),
               str(kept_log[0].relative_to(directory)) if kept_log else "no log file")

    # What is missing now, by a dry run; the rerun must submit exactly these jobs (plus one retry).
    code, dry, _ = snake.run("cancel_rerun_dry_run", directory, *args, "-n", "reproduce_tables", timeout=600)
    missing = [j for j in mark_local(parse_dry_run(dry), snakefile_localrules()) if not j["local"]]
    done_before = {r["Comment"] for r in sacct_records(run_uuid(text), env) if r["State"] == "COMPLETED"}

    # Phase 2: rerun with the profile (retries: 1); cancel the rerun training job once: it is retried.
    process, log_path = snake.start("cancel_phase2", directory, *args, "reproduce_tables")
    job2 = wait_until(lambda: running_jobs(env, "train"), timeout, 1.0, process)
    if job2:
        time.sleep(3)
        run(["scancel", job2[0][0]], env=env)
        log(f"scancel {job2[0][0]} ({job2[0][1]}) in the rerun")
    code = snake.wait(process, timeout)
    text = log_path.read_text()
    records = sacct_records(run_uuid(text), env, workdir / "logs" / "cancel_phase2_sacct.txt")
    submitted = Counter(r["Comment"] for r in records)
    expected = Counter(j["key"] for j in missing)
    retried = job2 and submitted.get(job2[0][1], 0) == 2 and "Trying to restart job" in text
    report.add("a cancelled job is retried (profile retries: 1) and the rerun completes", code == 0 and bool(retried),
               f"job {job2[0][0] if job2 else '-'}: {submitted.get(job2[0][1], 0) if job2 else 0} submissions, "
               f"snakemake exit {code}")
    if job2:
        submitted[job2[0][1]] -= 1
    extra = sorted((submitted - expected).elements())
    lacking = sorted((expected - submitted).elements())
    again = sorted(set(submitted) & done_before)
    report.add("the rerun submits exactly the jobs the dry run lists as missing",
               not extra and not lacking and not again,
               f"{sum(expected.values())} missing jobs: {dict(Counter(j['rule'] for j in missing))}",
               [f"submitted but not missing: {k}" for k in extra] + [f"missing but not submitted: {k}" for k in lacking]
               + [f"completed before, submitted again: {k}" for k in again])
    train_log = (folder / "train.log").read_text() if folder and (folder / "train.log").exists() else ""
    resumed = re.findall(r"resuming from iteration (\d+)", train_log)
    report.add("the cancelled training resumed from its checkpoint", bool(resumed) or not checkpoint,
               f"resumed from iteration {', '.join(resumed)}" if resumed else
               ("no checkpoint was written before the cancellation" if not checkpoint else "no 'resuming' in train.log"))
    report.data.setdefault("figures", {}).update({
        "scancel: jobs missing after the cancelled run": sum(expected.values()),
        "scancel: jobs submitted by the rerun (with the retry)": len(records),
    })
    if local_tables is not None:
        files, excluded, problems = compare_tables(local_tables, results)
        report.add("tables after cancel + rerun equal the local run's", not problems,
                   f"{len(files)} CSV files", problems)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(REPO / "build" / "slurm-check"),
                        help="folder for the runs, logs and report (emptied first; default build/slurm-check)")
    parser.add_argument("--config", default=str(CHECK_CONFIG),
                        help="workflow configuration (default config/slurm_check.yaml)")
    parser.add_argument("--cores", type=int, default=None,
                        help="--cores of every run: for the slurm executor, the most CPUs requested at once "
                             "(default: the CPUs of the node)")
    parser.add_argument("--status-seconds", type=int, default=10,
                        help="slurm-init-seconds-before-status-checks of the site profile (default 10)")
    parser.add_argument("--timeout", type=float, default=3600, help="limit per snakemake run in seconds")
    parser.add_argument("--skip", action="append", default=[], choices=["local", "slurm", "gpu", "cancel"],
                        help="leave out a part (repeatable)")
    parser.add_argument("--keep-cluster", action="store_true", help="leave the local cluster running at the end")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    config = Path(args.config).resolve()
    report = Report()
    snake = None
    started = False
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        if not config.is_file():
            raise CheckError(f"no configuration file {config}")
        if args.cores is not None and args.cores < 1:
            raise CheckError(f"--cores must be at least 1: {args.cores}")
        preflight()
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)

        status = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True, text=True)
        if status.returncode == 0:
            log("using the local SLURM that is already running (left running at the end)")
        else:
            log("starting the local SLURM (scripts/slurm-local.sh up)")
            started = True
            result = subprocess.run(as_root([str(SLURM_LOCAL), "up"]), capture_output=True, text=True)
            if result.returncode != 0:
                raise CheckError(f"slurm-local.sh up failed: {(result.stderr or result.stdout).strip()}")
        env = cluster_env(env)
        cpus, memory, node = node_figures(env)
        cores = args.cores or cpus
        snake = Snakemake(workdir, env)

        profile = yaml.safe_load(PROFILE.read_text())
        site, changes = site_profile(profile, account=ACCOUNT, partition=PARTITION, node_mem_mb=memory,
                                     status_seconds=args.status_seconds)
        profile_dir = workdir / "profile"
        profile_dir.mkdir()
        (profile_dir / "config.yaml").write_text(
            "# profiles/slurm/config.yaml with the site settings of the local test cluster (scripts/slurm_check.py)\n"
            + yaml.safe_dump(site, sort_keys=False))
        from importlib.metadata import version

        report.data["cluster"] = {"node": node, "cores (--cores)": cores,
                                  "SLURM": run(["sinfo", "-V"], env=env).stdout.strip()}
        report.data["versions"] = {p: version(p) for p in ("snakemake", "snakemake-executor-plugin-slurm",
                                                           "snakemake-executor-plugin-slurm-jobstep")}
        report.data["site_profile_changes"] = changes
        report.data["notes"] = NOTES

        if "gpu" not in args.skip:
            log("GPU requests of config/paper.yaml (dry run + recorded sbatch calls)")
            gpu = check_paper_gpu(workdir / "gpu", env)
            report.data["gpu"] = gpu
            options = {rule: " ".join(f"{k}={v}" if v else k for k, v in opts.items()
                                      if k in ("--gpus", "--gres", "--cpus-per-task", "--mem", "-t", "--ntasks"))
                       for rule, opts in gpu["sbatch_options"].items()}
            report.add("paper.yaml: gpu=1 on the GPU rules becomes --gpus=1 in their sbatch calls",
                       not gpu["problems"], "; ".join(f"{r}: {o}" for r, o in sorted(options.items())),
                       gpu["problems"])

        local_tables = None
        local_wall = None
        results_dir = yaml.safe_load(config.read_text())["results_dir"]
        if "local" not in args.skip:
            log(f"local run ({config.name}, --cores {cores})")
            code, _, local_wall = snake.run("local", workdir / "local", "--configfile", str(config),
                                            "--cores", str(cores), "reproduce_tables", timeout=args.timeout)
            report.add("local run of reproduce_tables completes", code == 0, f"exit {code}, {local_wall:.0f} s wall")
            if code == 0:
                local_tables = workdir / "local" / results_dir
                report.data.setdefault("figures", {})["local run wall time [s]"] = round(local_wall, 1)
                report.data["figures"]["local run: mean load average"] = snake.load.get("local")

        if "slurm" not in args.skip:
            log(f"SLURM run ({config.name}, --cores {cores})")
            wall = slurm_run(report, snake, workdir, env, profile_dir, site, config, cores, args.timeout)
            if wall is not None and local_tables is not None:
                files, excluded, problems = compare_tables(local_tables, workdir / "slurm" / results_dir)
                report.add("tables of the SLURM run equal the local run's", not problems,
                           f"{len(files)} CSV files; timing columns left out: {', '.join(excluded)}", problems)
                report.data["tables_compared"] = files
                report.data["timing_columns_excluded"] = excluded
            if wall is not None and local_wall:
                report.data["figures"]["SLURM / local wall time"] = round(wall / local_wall, 2)

        if "cancel" not in args.skip:
            log("scancel, retry and rerun")
            cancel_scenario(report, snake, workdir, env, profile_dir, config, cores, args.timeout, local_tables)
    except CheckError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        if not report.checks:
            _bring_down(started, args.keep_cluster, snake)
            return 2
        report.add("the check ran to the end", False, str(error))
    except KeyboardInterrupt:
        report.add("the check ran to the end", False, "interrupted")
    finally:
        _bring_down(started, args.keep_cluster, snake)
    if workdir.exists():
        report.write(workdir)
        log(f"report: {workdir / 'report.md'}")
    log("slurm-check " + ("PASSED" if report.ok else "FAILED"))
    return 0 if report.ok else 1


_down_done = False


def _bring_down(started: bool, keep: bool, snake: Snakemake | None) -> None:
    global _down_done
    if _down_done:
        return
    _down_done = True
    if snake is not None:
        snake.stop_all()
    if started and not keep:
        log("stopping the local SLURM (scripts/slurm-local.sh down)")
        try:
            subprocess.run(as_root([str(SLURM_LOCAL), "down"]), capture_output=True, text=True, timeout=180)
        except (CheckError, subprocess.TimeoutExpired) as error:
            print(f"{PROG}: slurm-local.sh down failed: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
