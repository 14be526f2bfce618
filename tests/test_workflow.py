"""The Snakemake workflow: DAGs of the default and the paper configuration (dry runs), training seeds, the
config schema, the report writer on fixture metrics (the functions the workflow's scripts call), and the
whole DAG run end to end with a stand-in `predictgs` command (tests/fixtures/workflow/fake_predictgs.py)
instead of training. No test trains a model."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from predictgs.methods.predict_gs import paper_settings
from predictgs.report import bd_table, load_runs
from predictgs.report import writer

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
FIXTURE_RUNS = REPO / "tests" / "fixtures" / "report" / "runs"
FAKE_CLI = REPO / "tests" / "fixtures" / "workflow" / "fake_predictgs.py"
RUN_RULES = ("train", "encode", "decode", "evaluate_decoded", "run_summary")

# The paper's Predict-GS settings, from the method's configuration (what the workflow passes the report).
DEFAULTS = paper_settings()

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import run_summary  # noqa: E402

pytest.importorskip("snakemake", reason="the workflow tests need snakemake (make install)")


# ---------------------------------------------------------------------------------------------------
# Helpers


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The "Job stats" table of a (dry) run: rule -> number of jobs."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    match = re.search(r"Job stats:\s*\njob\s+count\s*\n[-\s]+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    assert match, output[-3000:]
    counts = {}
    for line in match.group(1).splitlines():
        name, count = line.split()
        counts[name] = int(count)
    assert sum(counts.values()) == int(match.group(2))
    return counts


def read_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def scenes(config: dict, benchmark: str) -> list[str]:
    spec = config["benchmarks"][benchmark]
    if "family" in spec:
        return [f"{benchmark}_seed{seed}" for seed in spec["scene_seeds"]]
    return list(spec["scenes"])


def main_run_keys(config: dict, seeds=None, methods=None) -> set:
    """(benchmark, scene, method, variant, lambda, training seed) of the main runs (of ``methods``, a
    methods section; default the config's ``methods``)."""
    seeds = config.get("train_seeds", [0]) if seeds is None else seeds
    return {
        (benchmark, scene, method, "default", float(lmbda), seed)
        for benchmark in config["benchmarks"]
        for scene in scenes(config, benchmark)
        for method, spec in (config["methods"] if methods is None else methods).items()
        for lmbda in (spec.get("lambdas") or [0])
        for seed in seeds
    }


def ablation_run_keys(config: dict, seeds=None) -> set:
    """The runs behind the ablations, written independently of the workflow's own helpers."""
    seeds = config.get("train_seeds", [0]) if seeds is None else seeds
    keys = set()
    for kind, spec in config.get("ablations", {}).items():
        for benchmark in spec["benchmarks"]:
            for scene in scenes(config, benchmark):
                for lmbda in spec["lambdas"]:
                    for seed in seeds:
                        if kind == "components":
                            keys |= {(benchmark, scene, m, "default", float(lmbda), seed) for m in spec["methods"]}
                            continue
                        for value in spec["values"]:
                            default = DEFAULTS[kind]
                            same = str(value) == default if isinstance(default, str) else float(value) == float(default)
                            variant = "default" if same else (kind, value)
                            keys.add((benchmark, scene, "predictgs", variant, float(lmbda), seed))
    return keys


def fake_data_dir(root: Path, config: dict) -> Path:
    """Empty scene folders where a real-data configuration expects them (enough for a dry run)."""
    for spec in config["benchmarks"].values():
        names = spec["scenes"]
        folders = names.values() if isinstance(names, dict) else names
        for folder in folders:
            (root / spec.get("root", "") / folder).mkdir(parents=True, exist_ok=True)
    return root


def metrics_files(method=None, lmbda=None) -> list[Path]:
    files = sorted(FIXTURE_RUNS.rglob("metrics.json"))
    if method:
        files = [f for f in files if f.parts[-5] == method]
    if lmbda:
        files = [f for f in files if f.parent.name == f"lambda{lmbda}"]
    return files


# ---------------------------------------------------------------------------------------------------
# Dry runs


def test_default_config_dry_run_lists_every_run(tmp_path):
    config = read_config(DEFAULT_CONFIG)
    counts = job_counts(snakemake(tmp_path, "-n", "reproduce_tables"))
    runs = len(main_run_keys(config))
    n_benchmarks = len(config["benchmarks"])
    n_scenes = sum(len(scenes(config, b)) for b in config["benchmarks"])
    assert config["train_seeds"] == [0]  # make reproduce: one training seed, 27 runs
    # four rate points per entropy-coded method, the same four for HAC and Predict-GS (overlapping curves)
    assert config["methods"]["hac"]["lambdas"] == config["methods"]["predictgs"]["lambdas"]
    assert all(len(config["methods"][m]["lambdas"]) == 4 for m in ("hac", "predictgs"))
    assert runs == n_scenes * sum(len(s.get("lambdas") or [0]) for s in config["methods"].values()) == 27
    for rule in RUN_RULES:
        assert counts[rule] == runs, rule
    assert counts["synth_scene"] == counts["scene_info"] == n_scenes
    for rule in ("benchmark_tables", "bdrate_table", "rd_plot"):
        assert counts[rule] == n_benchmarks, rule
    assert counts["paper_comparison"] == counts["runs_table"] == counts["scene_table"] == 1
    assert counts["main_verdicts"] == 1  # reproduce_tables writes verdicts.md too
    assert sum(counts.values()) == 164
    assert not {"ablation_table", "sweep_plot", "verdicts_table"} & set(counts)


def test_dry_run_commands(tmp_path):
    """The command lines the rules run (printed by a dry run with -p)."""
    result = snakemake(tmp_path, "-n", "-p", "reproduce_tables")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    scaffold = re.search(r"args=\(--method scaffold .*?\)", output, re.S).group(0)
    assert "--lmbda" not in scaffold and "--config results/embedded/configs/" in scaffold
    hac = re.search(r"args=\(--method hac .*?\)", output, re.S).group(0)
    assert re.search(r"--lmbda 0\.(0005|001|002|004)\b", hac)
    # The training seed: its own folder and --seed (the seed of the scene is in the scene's name).
    assert re.search(r"--out results/embedded/runs/\S+/lambda0\.(0005|001|002|004)/train_seed0 .*--seed 0\b", hac,
                     re.S)
    encode = re.findall(r"predictgs encode (\S+) -o (\S+) (.*?) >", output)
    assert encode and all(out == f"{run}/scene.pgs" and "--no-eval" in extra for run, out, extra in encode)
    evaluate = re.findall(r"predictgs eval (\S+) --scene (\S+) --device (\S+)", output)
    assert evaluate and all(d.endswith("/decoded") and scene.startswith("results/embedded/scenes/") and device == "cpu"
                            for d, scene, device in evaluate)


def test_a_method_without_codec_is_only_trained(tmp_path):
    config = read_config(DEFAULT_CONFIG)
    config["methods"]["scaffold"]["codec"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(tmp_path, "-n", "reproduce_tables", "--configfile", str(path)))
    n_scaffold = sum(len(scenes(config, b)) for b in config["benchmarks"])
    assert counts["train"] == counts["run_summary"] == len(main_run_keys(config))
    assert counts["encode"] == counts["decode"] == counts["evaluate_decoded"] == counts["train"] - n_scaffold


def test_train_seeds_repeat_every_run(tmp_path):
    """Two training seeds: every run twice (its own folder), the same scenes and training configs."""
    config = read_config(DEFAULT_CONFIG)
    config["train_seeds"] = [0, 1]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(tmp_path, "-n", "reproduce_tables", "--configfile", str(path)))
    assert counts["train"] == counts["run_summary"] == len(main_run_keys(config)) == 2 * 27
    assert counts["synth_scene"] == 3 and counts["train_config"] == 9


def test_default_config_dry_run_of_the_ablations(tmp_path):
    config = read_config(DEFAULT_CONFIG)
    counts = job_counts(snakemake(tmp_path, "-n", "ablations"))
    assert counts["train"] == len(ablation_run_keys(config))
    assert counts["ablation_table"] == len(config["ablations"])
    assert counts["sweep_plot"] == len({"residual_dim", "ds_init"} & set(config["ablations"]))
    everything = job_counts(snakemake(tmp_path, "-n", "all"))
    assert everything["train"] == len(main_run_keys(config) | ablation_run_keys(config))
    assert "verdicts_table" not in everything  # `all` keeps one seed; `verdicts` repeats the runs


def test_default_config_dry_run_of_the_verdicts(tmp_path):
    """`verdicts`: every main and ablation run and the main runs of verdicts.methods (3DGS, for the claim
    on its size), once per training seed of verdicts.train_seeds (3)."""
    config = read_config(DEFAULT_CONFIG)
    seeds = config["verdicts"]["train_seeds"]
    assert seeds == [0, 1, 2] and config["verdicts"]["methods"] == ["3dgs"]
    counts = job_counts(snakemake(tmp_path, "-n", "verdicts"))
    gs = main_run_keys(config, seeds, methods={"3dgs": config["extended_methods"]["3dgs"]})
    runs = main_run_keys(config, seeds) | ablation_run_keys(config, seeds) | gs
    assert len(gs) == 3 * 3 and len(runs) == 3 * 38  # 27 main, 3 3DGS, 8 more for the ablations
    for rule in RUN_RULES:
        assert counts[rule] == len(runs), rule
    assert counts["verdicts_table"] == counts["verdict_runs_table"] == 1
    assert sum(counts.values()) == 596
    assert not {"benchmark_tables", "main_verdicts", "ablation_table"} & set(counts)
    # After reproduce_tables, its seed-0 runs are reused: the same folders.
    result = snakemake(tmp_path, "-n", "-p", "verdicts")
    assert "train_seed2" in result.stdout and "--seed 2" in result.stdout


def test_paper_config_dry_run(tmp_path):
    config = read_config(PAPER_CONFIG)
    data = fake_data_dir(tmp_path / "datasets", config)
    args = ("--configfile", str(PAPER_CONFIG), "--config", f"data_dir={data}")
    counts = job_counts(snakemake(tmp_path / "work", "-n", "all", *args))
    # 9 + 2 + 2 scenes; 3DGS and Scaffold-GS once, HAC, HAC++, Predict-GS and Predict-GS on HAC++ at five
    # rate points each.
    assert len(main_run_keys(config)) == 13 * 22
    expected = main_run_keys(config) | ablation_run_keys(config)
    for rule in RUN_RULES:
        assert counts[rule] == len(expected), rule
    assert "synth_scene" not in counts  # real scenes are read where they are
    assert counts["scene_info"] == 13
    assert counts["benchmark_tables"] == counts["bdrate_table"] == counts["rd_plot"] == 3
    assert counts["ablation_table"] == 4 and counts["sweep_plot"] == 2


def test_paper_config_needs_the_datasets(tmp_path):
    result = snakemake(tmp_path, "-n", "reproduce_tables", "--configfile", str(PAPER_CONFIG),
                       "--config", f"data_dir={tmp_path}/none")
    assert result.returncode != 0
    assert f"data_dir '{tmp_path}/none' is not a folder" in result.stdout + result.stderr
    # a data_dir without the scenes: the missing ones are listed
    result = snakemake(tmp_path, "-n", "reproduce_tables", "--configfile", str(PAPER_CONFIG),
                       "--config", f"data_dir={tmp_path}")
    assert result.returncode != 0
    assert "Missing input files" in result.stdout + result.stderr


def test_a_config_file_replaces_the_default_one(tmp_path):
    """--configfile must not be merged with config/config.yaml (that would add the synthetic benchmarks)."""
    config = read_config(PAPER_CONFIG)
    data = fake_data_dir(tmp_path / "datasets", config)
    result = snakemake(tmp_path / "work", "-n", "reproduce_tables", "--configfile", str(PAPER_CONFIG),
                       "--config", f"data_dir={data}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "synth_" not in result.stdout


def test_training_configs_written_per_benchmark_and_method(tmp_path):
    """The train_config rule (no training): per-benchmark voxel sizes, the protocol, per-method model keys."""
    config = read_config(PAPER_CONFIG)
    data = fake_data_dir(tmp_path / "datasets", config)
    root = "results/paper_protocol/configs"
    targets = [f"{root}/tandt/predictgs/default.yaml", f"{root}/db/scaffold/default.yaml",
               f"{root}/tandt/predictgs/residual_dim-10.yaml"]
    result = snakemake(tmp_path / "work", "--cores", "1", *targets, "--configfile", str(PAPER_CONFIG),
                       "--config", f"data_dir={data}")
    assert result.returncode == 0, result.stderr[-3000:]
    written = {t: yaml.safe_load((tmp_path / "work" / t).read_text()) for t in targets}
    tandt = written[targets[0]]
    assert tandt["benchmark"] == "tandt"
    assert tandt["train"] == {"iterations": 30000, "device": "cuda"}  # the seed: --seed, per run folder
    assert tandt["model"] == {"voxel_size": 0.01}
    assert tandt["protocol"]["resolution"] == "hac"
    assert written[targets[1]]["model"] == {"voxel_size": 0.005}
    assert written[targets[2]]["model"] == {"voxel_size": 0.01, "residual_dim": 10}


def _agree_with_presets(work: Path, files: dict[str, tuple[str, str]]) -> None:
    """Each workflow-written training config (path -> (method, preset)), passed to `predictgs train --config`
    as it is, gives the model and protocol that `predictgs train --preset` gives: one source of values."""
    from predictgs.pipeline.train import build_spec

    for path, (method, preset) in files.items():
        from_workflow, model_a = build_spec(method, "/scene", config_file=work / path)
        from_preset, model_b = build_spec(method, "/scene", preset=preset)
        assert model_a == model_b, path
        assert from_workflow.protocol == from_preset.protocol, path


def test_training_configs_agree_with_the_presets(tmp_path):
    """The per-dataset values live in predictgs/presets.py only: the workflow's training configs (paper
    and embedded) are the presets' values, for every method."""
    config = read_config(PAPER_CONFIG)
    data = fake_data_dir(tmp_path / "datasets", config)
    methods = ("scaffold", "hac", "hacpp", "predictgs", "predictgs_hacpp", "predictgs_sfp_only", "3dgs")
    paper = {f"results/paper_protocol/configs/{b}/{m}/default.yaml": (m, b) for b in ("mipnerf360", "tandt", "db")
             for m in methods}
    result = snakemake(tmp_path / "paper", "--cores", "1", *paper, "--configfile", str(PAPER_CONFIG),
                       "--config", f"data_dir={data}")
    assert result.returncode == 0, result.stderr[-3000:]
    _agree_with_presets(tmp_path / "paper", paper)
    embedded = {f"results/embedded/configs/{b}/{m}/default.yaml": (m, "embedded")
                for b in ("synth_outdoor", "synth_object") for m in methods}
    result = snakemake(tmp_path / "embedded", "--cores", "1", *embedded)
    assert result.returncode == 0, result.stderr[-3000:]
    _agree_with_presets(tmp_path / "embedded", embedded)


def test_default_training_configs_give_each_method_its_own_keys(tmp_path):
    root = "results/embedded/configs/synth_object"
    targets = [f"{root}/{m}/default.yaml" for m in ("scaffold", "hac", "predictgs", "predictgs_sfp_only")]
    targets.append(f"{root}/predictgs/schedule-linear.yaml")
    result = snakemake(tmp_path, "--cores", "1", *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    models = {t: yaml.safe_load((tmp_path / t).read_text()).get("model", {}) for t in targets}
    scaffold, hac, predictgs, sfp_only, linear = (models[t] for t in targets)
    assert "context" not in scaffold and "sfp" not in scaffold and "densify" in scaffold
    assert "context" in hac and "sfp" not in hac
    assert "context" in predictgs and "sfp" in predictgs
    assert sfp_only == predictgs  # an ablation variant uses its base method's entry
    assert linear == {**predictgs, "curriculum": {"schedule": "linear"}}  # where SWEEP_FIELDS puts it


def lint(snakefile: Path, cwd: Path) -> tuple[int, str, list[str]]:
    """``snakemake --lint``: exit status (1 when there is any finding), output, and what the findings are
    for ("rule NAME (line N, FILE)", "snakefile FILE"). Text output: Snakemake 9 accepts ``--lint json``
    but prints text all the same, and its JSON writer fails on findings (a LocalSourceFile in them)."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--lint"],
                            capture_output=True, text=True, cwd=cwd, timeout=120)
    output = result.stdout + result.stderr
    return result.returncode, output, re.findall(r"^Lints for (.+):$", output, re.M)


def test_lint_is_clean(tmp_path):
    status, output, findings = lint(SNAKEFILE, REPO)
    assert findings == [], output[-3000:]
    assert status == 0, output[-3000:]
    # The same check does see findings: a rule without log directive or software environment.
    bad = tmp_path / "Snakefile"
    bad.write_text('rule unlogged:\n    output: "out.txt"\n    shell: "touch {output}"\n')
    status, output, findings = lint(bad, tmp_path)
    assert status == 1
    assert [f.split(" (")[0] for f in findings] == ["rule unlogged"], output
    assert "No log directive defined" in output


def test_report_defaults_are_the_method_defaults():
    """A sweep value equal to the paper's default is the main run; the workflow takes the defaults from
    the method's configuration and passes them to the report (params.defaults), which keeps no copy."""
    from predictgs.methods.predict_gs import PredictGSConfig

    config = PredictGSConfig()
    assert DEFAULTS == {"residual_dim": config.residual_dim, "schedule": config.curriculum.schedule,
                        "ds_init": config.curriculum.ds_init}
    scripts = REPO / "workflow" / "scripts"
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for script in scripts.glob("*.py"):
        if "defaults=" in script.read_text():
            assert "defaults=dict(sm.params.defaults)" in script.read_text(), script.name
            # every rule running this script passes the method's settings
            blocks = [b for b in re.split(r"\nrule ", rules) if f"../scripts/{script.name}" in b]
            assert blocks and all("defaults=PREDICTGS_DEFAULTS" in b for b in blocks), script.name


# ---------------------------------------------------------------------------------------------------
# Config schema


def validate(config: dict) -> dict:
    from snakemake.utils import validate as snakemake_validate

    config = copy.deepcopy(config)
    snakemake_validate(config, str(SCHEMA))
    return config


@pytest.mark.parametrize("path", [DEFAULT_CONFIG, PAPER_CONFIG, REPO / "config" / "real_small.yaml"])
def test_schema_accepts_the_shipped_configs(path):
    config = validate(read_config(path))
    assert config["threads"]["train"] >= 1
    assert config["bdrate"]["anchor"][0] == "hac"  # BD-rate against HAC first, then HAC++


def test_schema_fills_defaults():
    config = read_config(DEFAULT_CONFIG)
    for key in ("threads", "bdrate", "ablations", "device", "train_seeds", "verdicts", "data_dir"):
        config.pop(key, None)
    config = validate(config)
    assert config["device"] == "cpu" and config["train_seeds"] == [0] and config["data_dir"] == "data"
    assert config["verdicts"] == {"train_seeds": [0, 1, 2], "methods": []}
    assert config["ablations"] == {}
    assert config["methods"]["hac"]["codec"] is True


def _bad(mutate):
    config = read_config(DEFAULT_CONFIG)
    mutate(config)
    return config


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: c.update(iterations=-5), id="negative-iterations"),
        pytest.param(lambda c: c.update(iterations=0), id="zero-iterations"),
        pytest.param(lambda c: c["methods"]["scaffold"].update(lambdas=[0.001]), id="scaffold-with-lambda"),
        pytest.param(lambda c: c["methods"]["hac"].update(lambdas=[0.0, 0.001]), id="zero-lambda"),
        pytest.param(lambda c: c["methods"]["hac"].update(lambdas=[]), id="no-lambdas"),
        pytest.param(lambda c: c.update(device="gpu"), id="bad-device"),
        pytest.param(lambda c: c.update(iteration=10), id="unknown-key"),
        pytest.param(lambda c: c["benchmarks"]["synth_object"].update(family="forest"), id="unknown-family"),
        pytest.param(lambda c: c["benchmarks"]["synth_object"].pop("scene_seeds"), id="synthetic-without-seeds"),
        pytest.param(lambda c: c["benchmarks"]["synth_object"].update(seeds=[0]), id="old-scene-seeds-key"),
        pytest.param(lambda c: c.update(train_seed=0), id="old-train-seed-key"),
        pytest.param(lambda c: c.update(train_seeds=[]), id="no-train-seeds"),
        pytest.param(lambda c: c.update(train_seeds=[0, 0]), id="repeated-train-seed"),
        pytest.param(lambda c: c.update(train_seeds=[-1]), id="negative-train-seed"),
        pytest.param(lambda c: c["verdicts"].update(seeds=[0, 1]), id="verdicts-typo"),
        pytest.param(lambda c: c["ablations"]["ds_init"].update(values=[0.5, 1.5]), id="ds-init-above-1"),
        pytest.param(lambda c: c["ablations"]["schedule"].update(values=["sine"]), id="unknown-schedule"),
        pytest.param(lambda c: c["ablations"]["components"].update(method=["hac"]), id="ablation-typo"),
        pytest.param(lambda c: c["train_config"].update(optimiser={}), id="unknown-train-config-section"),
        pytest.param(lambda c: c["bdrate"].update(interpolation="linear"), id="bad-interpolation"),
    ],
)
def test_schema_rejects_a_bad_config(mutate):
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError):
        validate(_bad(mutate))


def test_a_bad_config_stops_the_workflow_with_a_message(tmp_path):
    config = read_config(DEFAULT_CONFIG)
    config["ablations"]["components"]["benchmarks"] = ["nope"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "all", "--configfile", str(path))
    assert result.returncode != 0
    assert "ablations.components.benchmarks: unknown benchmark(s) nope" in result.stdout + result.stderr
    config = read_config(DEFAULT_CONFIG)
    config["methods"]["predictgs"]["lambdas"] = [-0.004]
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "all", "--configfile", str(path))
    assert result.returncode != 0
    assert "-0.004" in result.stdout + result.stderr
    # method names are checked against the method registry, in the main set and the extended one
    for section in ("methods", "extended_methods"):
        config = read_config(DEFAULT_CONFIG)
        config[section]["foo"] = {}
        path.write_text(yaml.safe_dump(config))
        result = snakemake(tmp_path, "-n", "all", "--configfile", str(path))
        assert result.returncode != 0
        assert "unknown method(s) foo" in result.stdout + result.stderr
    # a shared model key that no method has (at any level) stops it too
    config = read_config(DEFAULT_CONFIG)
    config["train_config"]["model"] = {"densify": {"grad_treshold": 0.002}}
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "all", "--configfile", str(path))
    assert result.returncode != 0
    assert "train_config.model.densify: no method has the key(s) grad_treshold" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------
# Aggregation scripts on fixture metrics


def benchmark_outputs(out: Path) -> dict:
    outputs = {}
    for name in ("table1", "table3_bit_allocation", "table5_efficiency"):
        outputs[name] = out / f"{name}.csv"
        outputs[f"{name}_md"] = out / f"{name}.md"
    outputs["survey"] = out / "survey"
    return outputs


ESTIMATED_SIZE_WARNING = "ignore:.*survey file holds estimated sizes:UserWarning"  # one fixture run is not encoded


@pytest.mark.filterwarnings(ESTIMATED_SIZE_WARNING)
def test_benchmark_tables_from_fixture_metrics(tmp_path):
    outputs = benchmark_outputs(tmp_path)
    writer.benchmark_tables(metrics_files(), "tandt", outputs, defaults=DEFAULTS)
    table1 = pd.read_csv(outputs["table1"])
    assert list(table1["Method"]) == ["HAC"] * 4 + ["Predict-GS"] * 4
    assert set(table1["Scenes"]) == {2}
    hac_low = table1[(table1["Method"] == "HAC") & (table1["lambda"] == 0.004)].iloc[0]
    assert hac_low["Rate"] == "low"
    runs = load_runs(metrics_files("hac", "0.004"))
    assert hac_low["PSNR"] == pytest.approx(runs["psnr"].mean())
    assert hac_low["Size [MiB]"] == pytest.approx(runs["size_bytes"].mean() / 2**20)
    table3 = pd.read_csv(outputs["table3_bit_allocation"])
    assert set(table3["Method"]) == {"HAC", "Predict-GS"}
    assert (table3.loc[table3["Method"] == "HAC", "BSF [%]"].abs() < 1e-9).all()
    table5 = pd.read_csv(outputs["table5_efficiency"])
    assert {"Train time [s]", "Encode time [s]", "Decode time [s]", "Test FPS", "Device"} <= set(table5.columns)
    markdown = outputs["table1_md"].read_text()
    assert markdown.startswith("# Table 1/2 — tandt")
    assert "| Predict-GS |" in markdown and "MiB" in markdown
    survey = pd.read_csv(outputs["survey"] / "hac" / "TanksAndTemples" / "train.csv")
    assert list(survey.columns) == ["Submethod", "PSNR", "SSIM", "LPIPS", "Size [Bytes]", "#Gaussians"]
    assert len(survey) == 4


@pytest.mark.filterwarnings(ESTIMATED_SIZE_WARNING)
def test_table_the_runs_cannot_support_becomes_a_note(tmp_path):
    """Runs without entropy-model estimates: no Table 3, but the other tables and a note saying why."""
    runs = tmp_path / "runs"
    for index, path in enumerate(metrics_files()):
        metrics = json.loads(path.read_text())
        metrics.pop("estimated_bits")
        (runs / str(index)).mkdir(parents=True)
        (runs / str(index) / "summary.json").write_text(json.dumps(metrics))
    outputs = benchmark_outputs(tmp_path / "tables")
    writer.benchmark_tables(sorted(runs.rglob("summary.json")), "tandt", outputs, defaults=DEFAULTS)
    table3 = pd.read_csv(outputs["table3_bit_allocation"])
    assert list(table3.columns) == ["note"] and "estimated_bits" in table3["note"].iloc[0]
    assert "not available" in outputs["table3_bit_allocation_md"].read_text()
    assert len(pd.read_csv(outputs["table1"])) == 8


def test_bdrate_from_fixture_metrics(tmp_path):
    table = writer.write_bdrate(metrics_files(), "tandt", "hac", ["predictgs"], "pchip",
                                tmp_path / "bdrate.csv", tmp_path / "bdrate.md", defaults=DEFAULTS)
    row = table.iloc[0]
    reference = bd_table(load_runs(metrics_files()), "tandt", "hac", ["predictgs"], defaults=DEFAULTS).iloc[0]
    assert row["BD-rate [%]"] == pytest.approx(reference["BD-rate [%]"])
    assert row["BD-PSNR [dB]"] == pytest.approx(reference["BD-PSNR [dB]"])
    assert row["Method points"] == row["Anchor points"] == 4 and row["Note"] == reference["Note"]
    assert row["PSNR overlap [% of anchor]"] == pytest.approx(75.0)
    assert pd.read_csv(tmp_path / "bdrate.csv")["BD-rate [%]"].iloc[0] == pytest.approx(row["BD-rate [%]"])
    markdown = (tmp_path / "bdrate.md").read_text()
    assert "BD-rate — tandt" in markdown and "PSNR overlap" in markdown
    assert "add lambdas" not in markdown  # every value was computed: no hint on missing rate points


def test_tables_are_also_written_as_latex(tmp_path):
    """Beside each Markdown table a LaTeX booktabs tabular with the same cells (rounded alike)."""
    from predictgs.report.tables import to_markdown

    table = writer.write_bdrate(metrics_files(), "tandt", "hac", ["predictgs"], "pchip",
                                tmp_path / "bdrate.csv", tmp_path / "bdrate.md", defaults=DEFAULTS)
    tex = (tmp_path / "bdrate.tex").read_text()
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert body[0].startswith(r"\begin{tabular}{") and body[1] == r"\toprule" and body[-1] == r"\end{tabular}"
    rows = [line.removesuffix(r" \\").split(" & ") for line in body if line.endswith(r" \\")]
    markdown = [[cell.strip() for cell in line.strip("|").split("|")] for line in to_markdown(table).splitlines()]
    assert len(rows) == len(table) + 1 and len(rows[0]) == len(table.columns)
    assert rows[1][1:4] == markdown[2][1:4]  # the same numbers as the Markdown table
    assert r"BD-rate [\%]" in tex and "% BD-rate" in tex
    assert "BD-rate — tandt" in (tmp_path / "bdrate.md").read_text()


def test_bdrate_with_too_few_rate_points_writes_why(tmp_path):
    one_point = metrics_files(lmbda="0.004")
    table = writer.write_bdrate(one_point, "tandt", "hac", ["predictgs"], "pchip",
                                tmp_path / "bdrate.csv", tmp_path / "bdrate.md", defaults=DEFAULTS)
    row = table.iloc[0]
    assert math.isnan(row["BD-rate [%]"]) and math.isnan(row["BD-PSNR [dB]"])
    assert "needs at least 2 rate points" in row["Note"]
    written = pd.read_csv(tmp_path / "bdrate.csv", keep_default_na=False)
    assert "needs at least 2 rate points" in written["Note"].iloc[0]
    markdown = (tmp_path / "bdrate.md").read_text()
    assert "not computed" in markdown and "add lambdas" in markdown
    # cubic (VCEG-M33) needs four points; a missing anchor is named
    table = bd_table(load_runs(metrics_files(lmbda="0.001") + metrics_files(lmbda="0.004")),
                     "tandt", "hac", ["predictgs"], "cubic", defaults=DEFAULTS)
    assert "needs at least 4 rate points" in table["Note"].iloc[0]
    table = bd_table(load_runs(metrics_files("predictgs")), "tandt", "hac", ["predictgs"], defaults=DEFAULTS)
    assert table["Note"].iloc[0] == "not computed: no hac runs on tandt"


def test_bdrate_warns_when_a_curve_is_not_monotone():
    runs = load_runs(metrics_files())
    assert "does not rise" not in bd_table(runs, "tandt", "hac", ["predictgs"], defaults=DEFAULTS)["Note"].iloc[0]
    # Predict-GS's largest rate point loses quality: the value is still computed, with a warning.
    ours = runs["method"] == "predictgs"
    largest = runs[ours].groupby("lmbda")["size_bytes"].mean().idxmax()
    runs.loc[ours & (runs["lmbda"] == largest), "psnr"] = runs.loc[ours, "psnr"].min() - 1.0
    row = bd_table(runs, "tandt", "hac", ["predictgs"], defaults=DEFAULTS).iloc[0]
    assert not math.isnan(row["BD-rate [%]"])
    assert row["Note"].startswith("warning: predictgs's PSNR does not rise with size")


def test_paper_comparison_runs_table_and_rd_plot_from_fixture_metrics(tmp_path):
    from predictgs.report import PAPER_DIR

    table = writer.paper_comparison(metrics_files(), PAPER_DIR, tmp_path / "cmp.csv", tmp_path / "cmp.md",
                                    defaults=DEFAULTS)
    assert set(table["comparison"]) == {"direct"}
    hac = table[(table["method"] == "hac") & (table["lmbda"] == 0.004) & (table["scene"] == "(mean)")
                & (table["metric"] == "psnr")].iloc[0]
    assert hac["paper"] == pytest.approx(24.036) and hac["delta"] == pytest.approx(hac["ours"] - hac["paper"])
    assert "delta = ours - paper" in (tmp_path / "cmp.md").read_text()
    runs = writer.runs_table(metrics_files(), tmp_path / "runs.csv")
    assert len(runs) == 16 and len(pd.read_csv(tmp_path / "runs.csv")) == 16
    written = writer.rd_plot(metrics_files(), "tandt", tmp_path / "plots", PAPER_DIR, defaults=DEFAULTS)
    assert sorted(p.name for p in written) == ["rd_tandt.pdf", "rd_tandt.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_ablation_tables_and_sweep_plot(tmp_path):
    base = json.loads(metrics_files("predictgs", "0.004")[0].read_text())
    runs = tmp_path / "runs"
    for index, (field, value) in enumerate([("residual_dim", 10), ("residual_dim", 25), ("residual_dim", 50),
                                            ("schedule", "linear"), ("schedule", "none")]):
        metrics = {**base, field: value, "psnr": base["psnr"] + index * 0.1}
        (runs / str(index)).mkdir(parents=True)
        (runs / str(index) / "summary.json").write_text(json.dumps(metrics))
    summaries = sorted(runs.rglob("summary.json"))
    sweep = writer.ablation_table("residual_dim", summaries, tmp_path / "rd.csv", tmp_path / "rd.md", defaults=DEFAULTS)
    assert list(sweep["residual_dim"]) == [10, 25, 50]
    schedule = writer.ablation_table("schedule", summaries, tmp_path / "s.csv", tmp_path / "s.md", defaults=DEFAULTS)
    assert list(schedule["Schedule"]) == ["Non", "Linear", "Ours (Cosine)"]
    assert (tmp_path / "s.md").read_text().startswith("# Table 6")
    paths = writer.sweep_plot("residual_dim", tmp_path / "rd.csv", tmp_path / "residual_dim")
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)
    # an ablation without its variant runs: a note, and a plot saying so
    components = writer.ablation_table("ds_init", summaries[:1], tmp_path / "ds.csv", tmp_path / "ds.md",
                                       defaults=DEFAULTS)
    assert writer.is_note(components) or len(components) == 1
    paths = writer.sweep_plot("ds_init", tmp_path / "ds.csv", tmp_path / "ds_init")
    assert all(p.exists() for p in paths)


def test_run_summary_merges_the_decoded_evaluation(tmp_path):
    metrics, decoded = _encoded_run(tmp_path)
    metrics.update(reference_size_bytes=metrics["size_bytes"] * 1.07, reference_bits={"anchor": 8.0})
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "train.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "12.5\t0:00:12\t512.0\t900\t400\t450\t1\t2\t95.0\t11.0\n"
    )
    warnings = []
    summary = run_summary.summarize(
        tmp_path / "metrics.json", benchmark="tandt", scene="train", method="hac", variant="default", seed=2,
        decoded_path=tmp_path / "decoded_metrics.json", bitstream_path=tmp_path / "scene.pgs",
        job_benchmarks={"train": tmp_path / "train.tsv", "encode": tmp_path / "missing.tsv"},
        warn=warnings.append,
    )  # decoded/metrics.json is read beside metrics.json, and compared with its copy
    assert summary["scene"] == "train" and summary["variant"] == "default"
    assert summary["psnr"] == decoded["psnr"] and summary["trained"]["psnr"] == metrics["psnr"]
    assert summary["fps"] == 123.0 and summary["device"] == "NVIDIA H100" and summary["train_device"] == "cpu"
    assert summary["num_anchors"] == 7 and summary["quality_from"] == "decoded"
    assert summary["decoded_psnr_change"] == pytest.approx(-0.2)
    assert summary["jobs"] == {"train": {"seconds": 12.5, "max_rss_mib": 512.0, "cpu_seconds": 11.0}}
    assert summary["seed"] == 2  # the folder's training seed (train_seed2)
    assert len(warnings) == 2 and "decoded PSNR" in warnings[1]  # 0.2 dB lost in the codec is reported
    assert "trained with seed 0, but its folder says train_seed2" in warnings[0]
    row = load_runs([_write(tmp_path / "summary.json", summary)]).iloc[0]
    assert row["fps"] == 123.0 and not row["size_estimated"]
    # Both sizes: the file and the reference code's accounting of the same model.
    assert row["size_bytes"] == metrics["size_bytes"]
    assert row["reference_size_bytes"] == pytest.approx(1.07 * metrics["size_bytes"])
    assert row["reference_bits_anchor"] == 8.0


def _encoded_run(folder: Path) -> tuple[dict, dict]:
    """A run folder as the workflow leaves it: metrics.json with the bitstream's size and CRC32, scene.pgs,
    decoded/metrics.json from that bitstream and its copy decoded_metrics.json."""
    data = b"\x89PGS fake bitstream " * 40
    metrics = json.loads(metrics_files("hac", "0.004")[0].read_text())
    metrics.update(scene="folder_name", size_bytes=len(data), bitstream_crc32=zlib.crc32(data))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "scene.pgs").write_bytes(data)
    decoded = {"kind": "decoded_model", "method": "hac", "psnr": metrics["psnr"] - 0.2, "ssim": 0.5, "lpips": 0.4,
               "lpips_alex": 0.2, "fps": 123.0, "device": "NVIDIA H100", "num_anchors": 7,
               "source_bytes": len(data), "source_crc32": zlib.crc32(data)}
    (folder / "decoded").mkdir()
    (folder / "decoded" / "metrics.json").write_text(json.dumps(decoded))
    (folder / "decoded_metrics.json").write_text(json.dumps(decoded))
    return metrics, decoded


@pytest.mark.parametrize("damage, message", [
    (lambda f: _edit_json(f / "decoded_metrics.json", psnr=99.0), "differs from"),
    (lambda f: _edit_both(f, psnr="high"), "must be a finite number"),
    (lambda f: _edit_both(f, source_crc32=1), "another bitstream"),
    (lambda f: (f / "scene.pgs").write_bytes((f / "scene.pgs").read_bytes()[::-1]), "CRC32"),
    (lambda f: (f / "scene.pgs").write_bytes(b"short"), "size_bytes"),
    (lambda f: (f / "metrics.json").write_text('{"psnr": 1, "psnr": 2}'), "duplicate key"),
    (lambda f: (f / "metrics.json").write_text('{"psnr": ' + "9" * 5000 + "}"), "psnr"),
    (lambda f: (f / "decoded" / "metrics.json").unlink(), "missing"),
    (lambda f: _edit_both(f, method="scaffold"), "scaffold"),
])
def test_run_summary_refuses_what_does_not_match(tmp_path, damage, message):
    """A hand-edited, stale or malformed intermediate is refused with one line, never tabulated."""
    _encoded_run(tmp_path)
    damage(tmp_path)
    with pytest.raises(run_summary.SummaryError, match=message):
        run_summary.summarize(tmp_path / "metrics.json", benchmark="b", scene="s", method="hac", variant="default",
                              decoded_path=tmp_path / "decoded_metrics.json", bitstream_path=tmp_path / "scene.pgs")
    code = ("import sys; sys.path.insert(0, 'workflow/scripts'); import run_summary; "
            f"sys.exit(run_summary.cli([{str(tmp_path)!r}, '--benchmark', 'b', '--scene', 's', '--method', 'hac', "
            "'--variant', 'default']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("run_summary: error: ") and not (tmp_path / "summary.json").exists()


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _edit_both(folder: Path, **changes) -> None:
    """decoded/metrics.json and its copy alike."""
    _edit_json(folder / "decoded" / "metrics.json", **changes)
    _edit_json(folder / "decoded_metrics.json", **changes)


def test_run_summary_stays_light():
    """One run_summary job runs per run: it shares the quality keys and the atomic writer without loading
    torch (or the report)."""
    code = ("import sys; sys.path.insert(0, 'workflow/scripts'); import run_summary; "
            "heavy = sorted(m for m in ('torch', 'pandas', 'predictgs.report') if m in sys.modules); print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    from predictgs.metric_keys import QUALITY_KEYS
    from predictgs.pipeline import codec

    assert run_summary.QUALITY is QUALITY_KEYS and codec.QUALITY_KEYS is QUALITY_KEYS


def test_run_summary_without_codec_keeps_the_training_metrics(tmp_path):
    metrics = json.loads(metrics_files("hac", "0.004")[0].read_text())
    del metrics["size_bytes"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    summary = run_summary.summarize(tmp_path / "metrics.json", benchmark="b", scene="s", method="hac",
                                    variant="default")
    assert summary["quality_from"] == "trained" and summary["psnr"] == metrics["psnr"]
    assert load_runs([_write(tmp_path / "summary.json", summary)]).iloc[0]["size_estimated"]


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------------
# The whole DAG with a stand-in `predictgs`


SMALL_CONFIG = {
    "results_dir": "results",
    "iterations": 10,
    "threads": {"train": 1},
    "synth": {"width": 32, "height": 24, "views": 8},
    # the same rate points for both, as config/config.yaml: curves that overlap (no warning on the BD-rate)
    "methods": {"scaffold": {}, "hac": {"lambdas": [0.0005, 0.004]}, "predictgs": {"lambdas": [0.0005, 0.004]}},
    "train_config": {
        "model": {"densify": {"grad_threshold": 0.002}},
        "model_by_method": {"hac": {"context": {"log2_grid": 9}}, "predictgs": {"sfp": {"log2_grid": 9}}},
    },
    "benchmarks": {"synth_object": {"family": "object", "scene_seeds": [0]}},
    "ablations": {
        "components": {"benchmarks": ["synth_object"], "lambdas": [0.004],
                       "methods": ["hac", "predictgs_sfp_only", "predictgs_no_pt", "predictgs"]},
        "schedule": {"benchmarks": ["synth_object"], "lambdas": [0.004], "values": ["none", "cosine"]},
        "residual_dim": {"benchmarks": ["synth_object"], "lambdas": [0.004], "values": [10, 25]},
    },
    "verdicts": {"train_seeds": [0, 1]},
}


@pytest.fixture
def fake_cli(tmp_path) -> dict:
    """An environment whose `predictgs` is the stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "predictgs"
    command.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = 'predictgs'\n"
                       f"runpy.run_path({str(FAKE_CLI)!r}, run_name='__main__')\n")
    command.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_extended_tables_with_a_stand_in_cli(tmp_path, fake_cli):
    """extended_tables: the main methods with HAC++, Predict-GS on HAC++ and 3DGS; BD-rates against HAC
    and HAC++; 3DGS's size is its PLY; reproduce_tables' own tables keep the main methods only."""
    config = {**SMALL_CONFIG, "ablations": {},
              "extended_methods": {"hacpp": {"lambdas": [0.0005, 0.004]},
                                   "predictgs_hacpp": {"lambdas": [0.0005, 0.004]}, "3dgs": {}},
              "bdrate": {"anchor": ["hac", "hacpp"], "methods": ["predictgs", "predictgs_hacpp", "hacpp"]}}
    config["train_config"] = {**SMALL_CONFIG["train_config"],
                              "model_by_method": {**SMALL_CONFIG["train_config"]["model_by_method"],
                                                  "3dgs": {"densify": {"grow_grad2d": 0.0016}}}}
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(work, "--cores", "2", "extended_tables", "reproduce_tables", "--configfile",
                       str(work / "config.yaml"), env=fake_cli, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    results = work / "results"
    # 3DGS's training configuration: the shared densify threshold (grad_threshold, anchors) left out
    gs_config = yaml.safe_load((results / "configs/synth_object/3dgs/default.yaml").read_text())
    assert gs_config["model"] == {"densify": {"grow_grad2d": 0.0016}}
    extended = results / "tables_extended" / "synth_object"
    table1 = pd.read_csv(extended / "table1.csv")
    assert list(table1["Method"]) == ["3DGS", "Scaffold-GS", "HAC", "HAC", "HAC++", "HAC++", "Predict-GS",
                                      "Predict-GS", "Predict-GS (HAC++)", "Predict-GS (HAC++)"]
    gs = table1[table1["Method"] == "3DGS"].iloc[0]
    size_column = next(c for c in table1.columns if c.startswith("Size"))
    assert float(gs[size_column]) == pytest.approx(5.0e7 / 2**20, rel=1e-3)  # the PLY, in MiB
    bdrate = pd.read_csv(extended / "bdrate.csv", keep_default_na=False)
    pairs = set(zip(bdrate["Anchor"], bdrate["Method"]))
    assert pairs == {("HAC", "Predict-GS"), ("HAC", "Predict-GS (HAC++)"), ("HAC", "HAC++"),
                     ("HAC++", "Predict-GS"), ("HAC++", "Predict-GS (HAC++)")}
    # every value computed; the BD-rates rest on overlapping PSNR ranges (the stand-in's HAC++ files are
    # far smaller than HAC's, so some BD-PSNRs rest on a short log-rate overlap and say so)
    assert not bdrate["Note"].str.contains("not computed|BD-rate rests").any()
    assert (bdrate["PSNR overlap [% of anchor]"] >= 75).all()
    assert (results / "plots_extended" / "rd_synth_object.png").stat().st_size > 1000
    # reproduce_tables: the main methods only, BD-rate against HAC only
    main = pd.read_csv(results / "tables" / "synth_object" / "table1.csv")
    assert list(main["Method"]) == ["Scaffold-GS", "HAC", "HAC", "Predict-GS", "Predict-GS"]
    main_bd = pd.read_csv(results / "tables" / "synth_object" / "bdrate.csv", keep_default_na=False)
    assert set(zip(main_bd["Anchor"], main_bd["Method"])) == {("HAC", "Predict-GS")}


@pytest.mark.slow  # ~150 jobs; about a minute on an idle 2-core CPU
def test_whole_workflow_with_a_stand_in_cli(tmp_path, fake_cli):
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(SMALL_CONFIG))
    result = snakemake(work, "--cores", "2", "all", "verdicts", "--configfile", str(work / "config.yaml"),
                       env=fake_cli, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    results = work / "results"
    tables = results / "tables" / "synth_object"

    run = results / "runs/synth_object/synth_object_seed0/hac/default/lambda0.004/train_seed0"
    for name in ("config.yaml", "checkpoint.pt", "metrics.json", "per_view.json", "scene.pgs", "decoded",
                 "decoded_metrics.json", "summary.json", "logs/train.log", "benchmarks/train.tsv",
                 "benchmarks/encode.tsv", "benchmarks/decode.tsv", "benchmarks/eval.tsv"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fps"] == 50.0 and summary["device"] == "fake-gpu" and summary["scene"] == "synth_object_seed0"
    assert summary["seed"] == 0 and summary["method_label"] == "HAC"
    assert summary["size_bytes"] == (run / "scene.pgs").stat().st_size
    assert set(summary["jobs"]) == {"train", "encode", "decode", "eval"}
    scaffold = results / "runs/synth_object/synth_object_seed0/scaffold/default/lambda0/train_seed0/summary.json"
    assert json.loads(scaffold.read_text())["lmbda"] == 0.0

    table1 = pd.read_csv(tables / "table1.csv")
    assert list(table1["Method"]) == ["Scaffold-GS", "HAC", "HAC", "Predict-GS", "Predict-GS"]
    assert (table1["Scenes w/ estimated size"] == 0).all()
    bdrate = pd.read_csv(tables / "bdrate.csv", keep_default_na=False)
    assert bdrate["Note"].iloc[0] == "" and float(bdrate["BD-rate [%]"].iloc[0]) < 0
    assert (tables / "survey" / "predictgs" / "synth_object" / "synth_object_seed0.csv").exists()
    assert (results / "plots" / "rd_synth_object.png").stat().st_size > 1000
    comparison = pd.read_csv(results / "paper_comparison.csv")
    assert list(comparison.columns) == ["note"] and "verdicts.md" in comparison["note"].iloc[0]  # no absolute stand-in
    assert len(pd.read_csv(results / "runs.csv")) == 5
    assert len(pd.read_csv(results / "scenes.csv")) == 1

    components = pd.read_csv(results / "ablations" / "components.csv")
    assert list(components["Method"]) == ["Baseline", "Ours w/ SFP", "Ours w/ SFP w/ f_r", "Ours all"]
    schedule = pd.read_csv(results / "ablations" / "schedule.csv")
    assert list(schedule["Schedule"]) == ["Non", "Ours (Cosine)"]
    assert list(pd.read_csv(results / "ablations" / "residual_dim.csv")["residual_dim"]) == [10, 25]
    assert (results / "ablations" / "residual_dim.pdf").exists()

    # reproduce_tables' verdicts: one seed decides nothing.
    one_seed = pd.read_csv(results / "verdicts.csv", keep_default_na=False)
    assert set(one_seed["verdict"]) == {"insufficient data"}
    assert "make verdicts" in (results / "verdicts.md").read_text()
    # `verdicts`: every run over 2 seeds (the stand-in's seeds shift PSNR and size alike, so relations agree).
    verdicts = pd.read_csv(results / "verdicts" / "verdicts.csv", keep_default_na=False)
    assert len(pd.read_csv(results / "verdicts" / "runs.csv")) == 2 * 9

    def row(claim, benchmark="synth_object"):
        found = verdicts[(verdicts["claim"] == claim) & (verdicts["benchmark"] == benchmark)]
        assert len(found) == 1, (claim, benchmark)
        return found.iloc[0]

    bd = row("bdrate-vs-hac")
    assert (bd["paper_benchmark"], bd["verdict"], bd["seeds"]) == ("Tanks&Temples", "holds", 2)
    # Mip-NeRF360 and Deep Blending have no stand-in in this config: one row each, saying so.
    elsewhere = verdicts[(verdicts["claim"] == "bdrate-vs-hac") & (verdicts["benchmark"] == "")]
    assert set(elsewhere["reason"]) == {"No runs on Mip-NeRF360 or a stand-in for it.",
                                        "No runs on Deep Blending or a stand-in for it."}
    assert row("components-quality")["verdict"] == "holds"  # the stand-in: 24.28 < 25.38 < 25.48 dB
    assert row("schedule-quality", "")["reason"] == "No runs of predictgs with schedule=linear."
    assert row("size-vs-3dgs")["reason"] == "No runs of 3dgs on synth_object."
    assert row("residual-below-25-loses-quality")["verdict"] == "holds"
    per_seed = pd.read_csv(results / "verdicts" / "verdicts_per_seed.csv")
    assert set(per_seed["seed"]) == {0, 1}
    markdown = (results / "verdicts" / "verdicts.md").read_text()
    assert "training seeds 0, 1" in markdown and "embedded scale only" in markdown
    # the scale each verdict speaks about, from the runs' metrics: a footnote per benchmark, a row per run
    assert "| synth_object [^synth_object] |" in markdown
    assert ("\n[^synth_object]: synth_object (standing in for Tanks&Temples): scene synth_object_seed0 at 32x24; "
            "10 iterations; anchors at the end 1.0k (HAC at λ 0.004: 1.0k); networks — of a file.") in markdown
    assert "| synth_object | synth_object_seed0 | HAC | default | 0.004 | 2 | 32x24 | 10 | 1000 |" in markdown

    again = snakemake(work, "-n", "all", "--configfile", str(work / "config.yaml"), env=fake_cli)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
