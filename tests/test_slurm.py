"""The cluster path: scripts/slurm-local.sh, scripts/slurm_conf.py and scripts/slurm_check.py.

Without SLURM: slurm.conf from given CPU/memory figures, the checks of scripts/slurm_check.py on recorded
accounting output (tests/fixtures/slurm: sacct and dry-run output of a real `make slurm-check`), and the sbatch
calls snakemake-executor-plugin-slurm makes for config/paper.yaml's GPU rules (stand-in SLURM commands).
With `sbatch` on the PATH: the whole `make slurm-check` against a live one-node SLURM (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
FIXTURES = REPO / "tests" / "fixtures" / "slurm"
sys.path.insert(0, str(SCRIPTS))
import slurm_check  # noqa: E402
import slurm_conf  # noqa: E402

NODE = "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------------
# slurm.conf


def test_slurm_conf_declares_the_node_with_the_given_figures():
    node = slurm_conf.parse_node_line(NODE + "\nUpTime=0-00:05:06")
    assert node["CPUs"] == "2" and node["RealMemory"] == "24105"
    text = slurm_conf.slurm_conf(node, "/tmp/x/", 20000, "c1", "cpu")
    lines = text.splitlines()
    node_line = next(line for line in lines if line.startswith("NodeName="))
    assert node_line.split() == ["NodeName=vm", "NodeAddr=127.0.0.1", "CPUs=2", "Boards=1", "SocketsPerBoard=1",
                                 "CoresPerSocket=2", "ThreadsPerCore=1", "RealMemory=24105", "State=UNKNOWN"]
    assert "PartitionName=cpu Nodes=vm Default=YES MaxTime=INFINITE State=UP" in lines
    for expected in ("ClusterName=c1", "SlurmctldHost=vm(127.0.0.1)", "SlurmctldPort=20000", "SlurmdPort=20001",
                     "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStoragePort=20002",
                     "AuthInfo=socket=/tmp/x/run/munge.socket", "AccountingStoragePass=/tmp/x/run/munge.socket",
                     "AccountingStoreFlags=job_comment", "SelectTypeParameters=CR_Core_Memory"):
        assert expected in lines, expected
    big = slurm_conf.parse_node_line("NodeName=gpu01 CPUs=64 RealMemory=512000")
    assert "NodeName=gpu01 NodeAddr=127.0.0.1 CPUs=64 RealMemory=512000 State=UNKNOWN" in slurm_conf.slurm_conf(
        big, "/s", 16817, "c", "p")
    dbd = slurm_conf.slurmdbd_conf("/tmp/x", 20000, "secret").splitlines()
    assert "DbdPort=20002" in dbd and "StoragePort=20003" in dbd and "StoragePass=secret" in dbd


@pytest.mark.parametrize("line", ["CPUs=2 RealMemory=100", "NodeName=vm CPUs=two RealMemory=100",
                                  "NodeName=vm CPUs=0 RealMemory=100", "UpTime=0-00:05:06"])
def test_slurm_conf_rejects_lines_that_are_not_slurmd_output(line):
    with pytest.raises(ValueError):
        slurm_conf.parse_node_line(line)


def test_slurm_conf_command(tmp_path):
    script = [sys.executable, str(SCRIPTS / "slurm_conf.py")]
    result = subprocess.run([*script, "--dir", str(tmp_path / "s"), "--node", NODE, "--out", str(tmp_path / "etc")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "CPUs=2" in (tmp_path / "etc" / "slurm.conf").read_text()
    assert stat.S_IMODE((tmp_path / "etc" / "slurmdbd.conf").stat().st_mode) == 0o600
    assert "--node" in subprocess.run([*script, "--help"], capture_output=True, text=True).stdout
    bad = subprocess.run([*script, "--dir", str(tmp_path), "--node", "hello", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert "not a 'slurmd -C' line" in one_line_error(bad)
    relative = subprocess.run([*script, "--dir", "state", "--node", NODE, "--out", str(tmp_path)],
                              capture_output=True, text=True)
    assert "absolute" in one_line_error(relative)
    missing = one_line_error(subprocess.run([*script, "--node", NODE], capture_output=True, text=True))
    assert "required: --dir, --out" in missing
    port = subprocess.run([*script, "--dir", "/s", "--node", NODE, "--out", str(tmp_path), "--port", "80"],
                          capture_output=True, text=True)
    assert "--port must be between" in one_line_error(port)


# ---------------------------------------------------------------------------------------------------
# slurm-local.sh without starting anything


def test_slurm_local_sh_help_and_bad_input(tmp_path):
    script = str(SCRIPTS / "slurm-local.sh")
    assert "up" in subprocess.run(["bash", script, "--help"], capture_output=True, text=True).stdout
    assert "unknown command 'start'" in one_line_error(subprocess.run(["bash", script, "start"], capture_output=True,
                                                                      text=True))
    assert "missing command" in one_line_error(subprocess.run(["bash", script], capture_output=True, text=True))
    # no SLURM commands on the PATH (as on CI): one line naming the Debian packages
    empty = tmp_path / "bin"
    empty.mkdir()
    result = subprocess.run(["/bin/bash", script, "up"], capture_output=True, text=True,
                            env={"PATH": str(empty), "PREDICTGS_SLURM_DIR": str(tmp_path / "state")})
    message = one_line_error(result)
    assert message.startswith("slurm-local.sh: missing Debian packages:") and "slurm-client" in message
    assert "apt-get install -y slurm-wlm slurmdbd mariadb-server" in message
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------------------------------------------
# The checks of slurm_check.py on recorded output


def fixture_jobs() -> list[dict]:
    jobs = slurm_check.parse_dry_run((FIXTURES / "dry_run.log").read_text())
    return slurm_check.mark_local(jobs, slurm_check.snakefile_localrules())


def fixture_records() -> list[dict]:
    return slurm_check.parse_sacct((FIXTURES / "sacct.txt").read_text())


def fixture_profile() -> dict:
    return yaml.safe_load((FIXTURES / "profile.yaml").read_text())


def test_localrules_of_the_snakefile():
    local = slurm_check.snakefile_localrules()
    assert {"train_config", "run_summary", "runs_table", "benchmark_tables", "bdrate_table", "rd_plot",
            "paper_comparison", "scene_table", "reproduce_tables"} <= local
    assert not {"synth_scene", "scene_info", "train", "encode", "decode", "evaluate_decoded"} & local


def test_dry_run_parsing():
    jobs = fixture_jobs()
    remote = sorted(j["rule"] for j in jobs if not j["local"])
    assert remote == ["decode", "decode", "encode", "encode", "evaluate_decoded", "evaluate_decoded", "scene_info",
                      "synth_scene", "train", "train"]
    train = next(j for j in jobs if j["rule"] == "train" and j["wildcards"]["method"] == "hac")
    assert train["key"] == "rule_train_wildcards_synth_object_synth_object_seed0_hac_default_0.004"
    assert train["threads"] == 1 and train["resources"]["runtime"] == 120 and train["resources"]["gpu"] == 0
    assert slurm_check.job_stats((FIXTURES / "dry_run.log").read_text())["train"] == 2


def test_accounting_records_match_the_profile():
    records, jobs, profile = fixture_records(), fixture_jobs(), fixture_profile()
    assert len(records) == 10
    assert slurm_check.check_job_records(records, jobs, profile, gpu=False) == []

    changed = [dict(r) for r in records]
    train = next(r for r in changed if r["Comment"].startswith("rule_train_"))
    train["ReqMem"] = "8000M"
    train["ReqTRES"] += ",gres/gpu=1"
    problems = slurm_check.check_job_records(changed, jobs, profile, gpu=False)
    assert len(problems) == 3 and all(train["Comment"] in p for p in problems)
    assert any("ReqMem [MB] (profile mem_mb) is 8000" in p for p in problems)
    assert any("GPU in ReqTRES is True" in p for p in problems)

    # a local rule that went through sbatch, a job without record, another account
    extra = dict(records[0], Comment="rule_runs_table", JobIDRaw="99")
    moved = [dict(r, Account="other") if r is records[1] else r for r in records[2:]] + [extra]
    problems = slurm_check.check_job_records(moved, jobs, profile, gpu=False)
    assert any("rule_runs_table: a local rule's job went through sbatch" in p for p in problems)
    assert sum("0 accounting records instead of 1" in p for p in problems) == 2
    # a different profile is noticed
    other = yaml.safe_load(yaml.safe_dump(profile))
    other["set-resources"]["scene_info"]["runtime"] = 5
    assert any("Timelimit [min] (profile runtime) is 15, expected 5" in p
               for p in slurm_check.check_job_records(records, jobs, other, gpu=False))


@pytest.mark.parametrize("text, minutes", [("02:00:00", 120), ("00:30:00", 30), ("1-00:00:00", 1440),
                                           ("15:00", 15), ("UNLIMITED", -1), ("00:00:30", 1)])
def test_timelimit(text, minutes):
    assert slurm_check.parse_timelimit(text) == minutes


def test_memory_and_elapsed():
    assert slurm_check.parse_mem_mb("12052M") == 12052 and slurm_check.parse_mem_mb("4G") == 4096
    assert slurm_check.parse_mem_mb("8000Mn") == 8000
    with pytest.raises(ValueError):
        slurm_check.parse_mem_mb("1000Mc")
    assert slurm_check.parse_seconds("00:01:02") == 62 and slurm_check.parse_seconds("1-00:00:01") == 86401


def test_sbatch_options():
    call = ("sbatch --parsable --job-name abc --output /x/%j.log --export=ALL --comment rule_train_wildcards_a_b "
            "-A acc -p gpu -t 120 --mem 48000 --cpus-per-task=4 -D /w --gpus=1 --wrap=\"python -m snakemake --x\"")
    options = slurm_check.sbatch_options(call)
    assert options["--gpus"] == "1" and options["--mem"] == "48000" and options["-t"] == "120"
    assert options["--cpus-per-task"] == "4" and options["-A"] == "acc" and options["--parsable"] == ""
    assert "--wrap" not in options and "--x" not in options


def test_gpu_call_checks():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    good = "--comment rule_train_wildcards_a -t 120 --mem 48000 --cpus-per-task=4 --gpus=1"
    seen, problems = slurm_check.check_gpu_calls([good], profile, 4)
    assert problems == [] and set(seen) == {"train"}
    bad = "--comment rule_encode_wildcards_a -t 30 --mem 32000 --ntasks=1 --cpus-per-task=1"
    _, problems = slurm_check.check_gpu_calls([bad], profile, 4)
    assert len(problems) == 3  # no GPU, 1 CPU, --ntasks
    cpu_gpu = "--comment rule_scene_info_wildcards_a -t 15 --mem 8000 --gpus=1"
    assert "asks for a GPU" in slurm_check.check_gpu_calls([cpu_gpu], profile, 4)[1][0]


def write_csv(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_table_comparison_leaves_out_timings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_csv(a / "t/table5.csv", "Method,PSNR,Train time [s],Test FPS\nHAC,25.1,10.0,3.0\n")
    write_csv(b / "t/table5.csv", "Method,PSNR,Train time [s],Test FPS\nHAC,25.1,12.5,2.0\n")
    write_csv(a / "cmp.csv", "method,metric,ours\nhac,psnr,25.1\nhac,train_seconds,10\n")
    write_csv(b / "cmp.csv", "method,metric,ours\nhac,psnr,25.1\nhac,train_seconds,11\n")
    files, excluded, problems = slurm_check.compare_tables(a, b)
    assert files == ["cmp.csv", "t/table5.csv"] and problems == []
    assert excluded == ["cmp.csv: metric=train_seconds rows", "t/table5.csv: Test FPS", "t/table5.csv: Train time [s]"]
    write_csv(b / "t/table5.csv", "Method,PSNR,Train time [s],Test FPS\nHAC,25.2,12.5,2.0\n")
    (b / "cmp.csv").unlink()
    _, _, problems = slurm_check.compare_tables(a, b)
    assert problems == ["cmp.csv: missing", "t/table5.csv row 1 PSNR: '25.1' vs '25.2'"]


def test_site_profile_adds_account_and_partition_and_fits_memory():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    site, changes = slurm_check.site_profile(profile, account="acc", partition="cpu", node_mem_mb=24105,
                                             status_seconds=None)
    assert site["default-resources"]["slurm_account"] == "acc" and site["default-resources"]["mem_mb"] == 8000
    assert site["set-resources"]["train"] == {"runtime": 120, "mem_mb": 12052}
    assert "set-resources.train: mem_mb 48000 -> 12052 (the node has 24105 MB)" in changes
    assert profile["set-resources"]["train"]["mem_mb"] == 48000  # the profile itself is left alone
    assert len(changes) == 5


def test_slurm_check_bad_input(tmp_path):
    script = [sys.executable, str(SCRIPTS / "slurm_check.py")]
    assert "--workdir" in subprocess.run([*script, "--help"], capture_output=True, text=True).stdout
    missing = subprocess.run([*script, "--config", str(tmp_path / "none.yaml"), "--workdir", str(tmp_path / "w")],
                             capture_output=True, text=True)
    assert "no configuration file" in one_line_error(missing)
    cores = subprocess.run([*script, "--cores", "0", "--workdir", str(tmp_path / "w")], capture_output=True, text=True)
    assert "--cores must be at least 1" in one_line_error(cores)
    assert "invalid choice" in one_line_error(subprocess.run([*script, "--skip", "all"], capture_output=True, text=True))
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------------------------------
# The sbatch calls of the pinned executor plugin (stand-in SLURM commands; no scheduler needed)


def plugin_env() -> dict:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm not installed")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SLURM_CONF", None)
    return env


def test_paper_config_gpu_rules_ask_for_one_gpu(tmp_path):
    result = slurm_check.check_paper_gpu(tmp_path, plugin_env())
    assert result["problems"] == []
    runs = 13 * 22  # 13 scenes x (Scaffold-GS + 3DGS + 5 rate points of HAC, HAC++, Predict-GS, Predict-GS+HAC++)
    # the fixture has three runs trained, two of them encoded, one of them decoded (none evaluated)
    assert result["dry_run_jobs"] == {"scene_info": 13, "train": runs - 3, "encode": runs - 2, "decode": runs - 1,
                                      "evaluate_decoded": runs}
    options = result["sbatch_options"]
    assert set(options) == {"scene_info", "train", "encode", "decode", "evaluate_decoded"}
    assert options["train"]["--gpus"] == "1" and options["train"]["--cpus-per-task"] == "4"
    assert options["train"]["--mem"] == "48000" and options["train"]["-t"] == "120"
    assert "--gpus" not in options["scene_info"] and options["scene_info"]["--ntasks"] == "1"


@pytest.mark.slow  # three snakemake runs, ~10 s each
@pytest.mark.parametrize("variant", ["gpu_model", "gres", "slurm_extra"])
def test_gpu_options_of_the_profile_variants(tmp_path, variant):
    """The alternatives the profile documents: gpu_model, the gres form, and slurm_extra refusing --gres."""
    env = plugin_env()
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    for rule in slurm_check.GPU_RULES:
        entry = profile["set-resources"][rule]
        if variant == "gpu_model":
            entry["gpu_model"] = "a100"
        elif variant == "gres":
            entry.update(gpu=0, gres="gpu:1")
        else:
            entry.update(gpu=0, slurm_extra="'--gres=gpu:1'")
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    if variant == "slurm_extra":
        # the executor refuses the GPU rules and submits scene_info only: stop once both have happened
        refusal = "The --generic-resources-(GRES) option is not allowed in the 'slurm_extra'"
        calls, log = slurm_check.record_gpu_calls(tmp_path / "run", env, tmp_path / "profile", timeout=60,
                                                  wanted=1, log_has=refusal)
        rules = {slurm_check.sbatch_options(c)["--comment"].split("_wildcards_")[0] for c in calls}
        assert rules == {"rule_scene_info"}
        assert refusal in log
        return
    calls, log = slurm_check.record_gpu_calls(tmp_path / "run", env, tmp_path / "profile", timeout=60)
    expect = "--gpus=a100:1" if variant == "gpu_model" else "--gres=gpu:1"
    seen, problems = slurm_check.check_gpu_calls(calls, profile, 4, expect=expect)
    assert problems == [] and set(slurm_check.GPU_RULES) <= set(seen)


def test_profile_status_command_copes_with_cancelled_jobs():
    """sacct reports a job killed with scancel as "CANCELLED by <uid>". The pinned plugin's sacct status
    query keeps that text whole and then takes the job for a running one (snakemake waits forever), so the
    profile must ask for squeue, which reports "CANCELLED"."""
    query = pytest.importorskip("snakemake_executor_plugin_slurm.job_status_query",
                                reason="snakemake-executor-plugin-slurm not installed")

    class Logger:
        def debug(self, message):
            pass

    status, _ = asyncio.run(query.query_job_status("printf '12|CANCELLED by 0\\n13|COMPLETED\\n'", Logger()))
    assert status["13"] == "COMPLETED"
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    if status["12"] != "CANCELLED":
        assert profile.get("slurm-status-command") == "squeue"


# ---------------------------------------------------------------------------------------------------
# The live check


def live_skip_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return ("sbatch is not on the PATH: the live SLURM check needs the Debian packages slurm-wlm slurmdbd "
                "mariadb-server (README, Running on a cluster)")
    if Path("/etc/slurm/slurm.conf").exists():
        return "this machine has a SLURM configuration (/etc/slurm/slurm.conf): the check only runs its own cluster"
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        return "starting the local SLURM needs root or passwordless sudo"
    return None


@pytest.mark.slow  # ~10 minutes on an idle 2-core machine (three runs of the reduced workflow)
@pytest.mark.skipif(live_skip_reason() is not None, reason=live_skip_reason() or "")
def test_make_slurm_check(tmp_path):
    work = tmp_path / "slurm-check"
    result = subprocess.run([sys.executable, str(SCRIPTS / "slurm_check.py"), "--workdir", str(work)],
                            capture_output=True, text=True, timeout=7200)
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").exists() else {}
    failed = [c for c in report.get("checks", []) if not c["ok"]]
    assert result.returncode == 0 and report.get("ok"), (failed, result.stdout[-4000:], result.stderr[-2000:])
    assert report["figures"]["sbatch jobs (SLURM run)"] == 10
