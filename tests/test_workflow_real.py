"""The real-photo workflow configuration (config/real_small.yaml, `make verdicts-real`): its DAG (dry run),
the protocol each scene is read with (scene-info on the shared real scenes, skipped where they are absent),
the training configurations it writes, and a missing data_dir as one message. No test trains a model."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from test_workflow import (
    REPO,
    RUN_RULES,
    ablation_run_keys,
    fake_data_dir,
    job_counts,
    main_run_keys,
    read_config,
    snakemake,
    validate,
)

REAL_CONFIG = REPO / "config" / "real_small.yaml"
SEEDS = [0, 1, 2]


def real_args(data_dir) -> tuple[str, ...]:
    return ("--configfile", str(REAL_CONFIG), "--config", f"data_dir={data_dir}")


def test_real_small_config_dry_run(tmp_path):
    """all + verdicts: both scenes x (3DGS, Scaffold-GS, four methods at five rate points), the ablations on
    fern at lambda 0.004, three training seeds, every run once (the tables and the verdicts share them)."""
    config = read_config(REAL_CONFIG)
    assert config["train_seeds"] == config["verdicts"]["train_seeds"] == SEEDS
    paper = read_config(REPO / "config" / "paper.yaml")
    for method in ("hac", "hacpp", "predictgs", "predictgs_hacpp"):
        assert config["methods"][method]["lambdas"] == paper["methods"][method]["lambdas"]  # five points
    assert {b: s["stands_in_for"] for b, s in config["benchmarks"].items()} == {
        "real_llff": "Mip-NeRF360", "real_object": "Tanks&Temples"}
    data = fake_data_dir(tmp_path / "scenes", config)
    counts = job_counts(snakemake(tmp_path / "work", "-n", "all", "verdicts", *real_args(data)))
    main = main_run_keys(config, SEEDS)
    ablations = ablation_run_keys(config, SEEDS)
    assert len(main) == 2 * 22 * 3 and len(ablations - main) == 8 * 3
    assert {key[0] for key in ablations} == {"real_llff"}
    for rule in RUN_RULES:
        assert counts[rule] == len(main | ablations) == 156, rule
    assert counts["scene_info"] == 2 and "synth_scene" not in counts
    assert counts["train_config"] == 2 * 6 + 8  # 6 methods per scene; fern's ablation variants
    for rule in ("benchmark_tables", "bdrate_table", "rd_plot"):
        assert counts[rule] == 2, rule
    assert counts["ablation_table"] == 4 and counts["verdicts_table"] == counts["main_verdicts"] == 1


def test_real_small_command_lines_read_the_scenes_where_they_are(tmp_path):
    config = read_config(REAL_CONFIG)
    data = fake_data_dir(tmp_path / "scenes", config)
    result = snakemake(tmp_path / "work", "-n", "-p", "all", "verdicts", *real_args(data))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"--scene {data}/fern " in output and f"--scene {data}/test_colmap_23/dense/0 " in output
    assert f"predictgs scene-info {data}/fern --resolution 3dgs --images-folder images_8 --llffhold 8 " in output
    assert (f"predictgs scene-info {data}/test_colmap_23/dense/0 --resolution factor --downscale 2 "
            "--llffhold 8 ") in output
    assert "--benchmark real_llff" in output and "--seed 2" in output


@pytest.mark.parametrize("args", [(), ("--config", "data_dir=/no/such/folder")])
def test_real_small_without_data_dir_is_one_message(tmp_path, args):
    result = snakemake(tmp_path, "-n", "verdicts", "--configfile", str(REAL_CONFIG), *args)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "is not a folder: give the folder holding the scenes of real_llff, real_object with --config " \
           "data_dir=PATH" in output
    assert "Missing input files" not in output and "Traceback" not in output


def test_make_verdicts_real_needs_data_dir():
    result = subprocess.run(["make", "-s", "verdicts-real", "DATA_DIR="], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "make verdicts-real: DATA_DIR='' is not a folder; give the one holding fern/ and test_colmap_23/ "
        "(e.g. DATA_DIR=../shared/data/scenes)")
    result = subprocess.run(["make", "-n", "verdicts-real", "DATA_DIR=/tmp"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert ("snakemake --cores all all verdicts --configfile config/real_small.yaml --config data_dir=/tmp"
            in result.stdout)


def test_real_small_reads_fern_and_test_colmap_23_with_their_protocol(tmp_path, shared_data):
    """scene-info through the workflow on the shared real scenes, and the training configurations it
    writes: fern at images_8 (504x378), test_colmap_23 halved to ~500 px wide, every 8th image a test view;
    the voxel sizes, growth thresholds and table sizes of the configuration."""
    from predictgs.pipeline.train import build_spec

    data = shared_data / "scenes"
    outputs = ["results/real_small/scene_info/real_llff/fern.json",
               "results/real_small/scene_info/real_object/test_colmap_23.json",
               "results/real_small/configs/real_llff/hac/default.yaml",
               "results/real_small/configs/real_llff/3dgs/default.yaml",
               "results/real_small/configs/real_object/predictgs_hacpp/default.yaml"]
    # every scene's summary and every training configuration, nothing trained
    result = snakemake(tmp_path, "--cores", "2", "all", "verdicts", "--until", "scene_info", "train_config",
                       *real_args(data), timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    configs = sorted((tmp_path / "results/real_small/configs").rglob("*.yaml"))
    assert len(configs) == 20
    scenes = {"real_llff": data / "fern", "real_object": data / "test_colmap_23/dense/0"}
    for path in configs:  # each one is a configuration `predictgs train` accepts for its method
        benchmark, method = path.parts[-3], path.parts[-2]
        spec, _ = build_spec(method, scenes[benchmark], config_file=path, benchmark=benchmark)
        assert spec.train.iterations == 3000 and spec.protocol["llffhold"] == 8
    fern = json.loads((tmp_path / outputs[0]).read_text())
    assert (fern["format"], fern["image_size"], fern["num_train"], fern["num_test"]) == ("llff", [504, 378], 17, 3)
    assert fern["protocol"]["images_folder"] == "images_8" and fern["num_points"] == 10091
    figurine = json.loads((tmp_path / outputs[1]).read_text())
    assert (figurine["format"], figurine["num_train"], figurine["num_test"]) == ("colmap", 20, 3)
    assert figurine["image_size"][0] == 500 and 325 <= figurine["image_size"][1] <= 335
    hac = yaml.safe_load((tmp_path / outputs[2]).read_text())
    assert hac["protocol"] == {"llffhold": 8, "resolution": "3dgs", "images_folder": "images_8"}
    assert hac["train"]["iterations"] == 3000 and hac["benchmark"] == "real_llff"
    assert hac["model"]["voxel_size"] == 0.01 and hac["model"]["densify"] == {"grad_threshold": 0.00036}
    assert hac["model"]["context"] == {"log2_grid": 11, "log2_plane": 11}
    gs = yaml.safe_load((tmp_path / outputs[3]).read_text())
    assert gs["model"] == {"densify": {"grow_grad2d": 0.00036}}  # no voxels for 3DGS
    ours = yaml.safe_load((tmp_path / outputs[4]).read_text())
    assert ours["protocol"] == {"llffhold": 8, "resolution": "factor", "downscale": 2}
    assert ours["model"]["voxel_size"] == 0.001 and ours["model"]["mask_lr_final_per_lambda"] == 1.0e-4
    assert ours["model"]["sfp"] == {"log2_grid": 11, "log2_plane": 11}


def test_stands_in_for_names_a_paper_benchmark_and_only_for_other_benchmarks(tmp_path):
    from snakemake.exceptions import WorkflowError

    config = read_config(REAL_CONFIG)
    config["benchmarks"]["real_llff"]["stands_in_for"] = "LLFF"
    with pytest.raises(WorkflowError):
        validate(config)
    # the paper's own benchmark cannot stand in for one
    config = read_config(REPO / "config" / "paper.yaml")
    config["benchmarks"]["tandt"]["stands_in_for"] = "Mip-NeRF360"
    data = fake_data_dir(tmp_path / "datasets", config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path / "work", "-n", "reproduce_tables", "--configfile", str(path), "--config",
                       f"data_dir={data}")
    assert result.returncode != 0
    assert "benchmarks.tandt.stands_in_for: tandt is the paper's own Tanks&Temples benchmark" in (
        result.stdout + result.stderr)
