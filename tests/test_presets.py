"""Per-dataset presets: the reference values, what `predictgs train --preset` applies, the benchmark name
selecting its preset, workflow train_config files accepted by --config, and `predictgs presets`.
(That the workflow writes the same values: tests/test_workflow.py, test_training_configs_*.)"""

from __future__ import annotations

import json

import pytest
import yaml

from baselines.hacpp import HACppConfig
from predictgs.cli import main
from predictgs.entropy.anchor import ContextConfig
from predictgs.errors import ConfigError
from predictgs.pipeline.train import build_spec
from predictgs.presets import (PRESETS, REFERENCE_GRAD_THRESHOLD, REFERENCE_HASH_LOG2, REFERENCE_INIT_FACTOR,
                               REFERENCE_MASK_LR)
from predictgs.train.densify import DensifyConfig
from predictgs.train.gs_densify import GaussianDensifyConfig

SCENE = "/nonexistent/scene"  # build_spec does not read the scene


def test_reference_values_are_the_methods_defaults():
    assert REFERENCE_GRAD_THRESHOLD == DensifyConfig().grad_threshold == GaussianDensifyConfig().grow_grad2d
    assert REFERENCE_INIT_FACTOR == DensifyConfig().init_factor
    assert REFERENCE_MASK_LR == (HACppConfig().mask_lr_final_per_lambda, HACppConfig().mask_lr_final_max)
    assert REFERENCE_HASH_LOG2 == (ContextConfig().log2_grid, ContextConfig().log2_plane)


# The reference code's per-dataset values (Scaffold-GS / HAC run scripts, HAC++'s mask learning rates):
# written out by hand so that a changed preset fails here.
@pytest.mark.parametrize("name,voxel,init_factor,mask_lr,white", [
    ("mipnerf360", 0.001, 16, (5e-4, 1.5e-3), False),
    ("tandt", 0.01, 16, (1e-4, None), False),
    ("db", 0.005, 16, (8e-5, None), False),
    ("nerf_synthetic", 0.001, 4, (8e-5, None), True),
])
def test_dataset_presets_carry_the_reference_values(name, voxel, init_factor, mask_lr, white):
    spec, config = build_spec("hacpp", SCENE, preset=name, lmbda=0.002)
    assert config.voxel_size == voxel and config.densify.init_factor == init_factor
    assert config.densify.grad_threshold == 0.0002
    assert (config.mask_lr_final_per_lambda, config.mask_lr_final_max) == mask_lr
    expected_final = mask_lr[0] * 0.002 / 1e-3 if mask_lr[1] is None else min(mask_lr[0] * 2, mask_lr[1])
    assert config.lr_masks_scaled[1] == pytest.approx(expected_final)
    assert spec.protocol["white_background"] is white and spec.protocol["resolution"] == "hac"
    assert spec.protocol["max_width"] == 1600 and spec.protocol["llffhold"] == 8
    assert spec.benchmark == name  # the preset names the benchmark unless --benchmark does


def test_embedded_preset_is_the_embedded_benchmark_settings():
    _, hac = build_spec("hac", SCENE, preset="embedded")
    assert hac.voxel_size is None and hac.densify.grad_threshold == 0.0016
    assert (hac.context.log2_grid, hac.context.log2_plane) == (11, 11)
    _, predictgs = build_spec("predictgs", SCENE, preset="embedded")
    assert (predictgs.sfp.log2_grid, predictgs.sfp.log2_plane) == (11, 11)
    _, gs = build_spec("3dgs", SCENE, preset="embedded")
    assert gs.densify.grow_grad2d == 0.0016 and gs.densify.reset_every is None


def test_no_preset_is_the_reference():
    spec, config = build_spec("hac", SCENE)
    assert config.voxel_size is None and config.densify.grad_threshold == 0.0002
    assert spec.benchmark == "custom" and spec.protocol["white_background"] is None


def test_benchmark_name_selects_its_preset():
    """`--benchmark mipnerf360` alone used to train with the automatic voxel size; it now selects the
    preset mipnerf360. An explicit --preset wins; another benchmark name selects nothing."""
    _, config = build_spec("hac", SCENE, benchmark="mipnerf360")
    assert config.voxel_size == 0.001
    spec, config = build_spec("hac", SCENE, benchmark="mipnerf360", preset="tandt")
    assert config.voxel_size == 0.01 and spec.benchmark == "mipnerf360"
    _, config = build_spec("hac", SCENE, benchmark="my_scenes")
    assert config.voxel_size is None


def test_config_file_and_options_override_the_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"voxel_size": 0.02}, "protocol": {"max_width": 800}}))
    spec, config = build_spec("hac", SCENE, preset="mipnerf360", config_file=path, protocol={"llffhold": 4})
    assert config.voxel_size == 0.02
    assert spec.protocol["max_width"] == 800 and spec.protocol["llffhold"] == 4
    path.write_text(yaml.safe_dump({"preset": "db"}))
    assert build_spec("hac", SCENE, config_file=path)[1].voxel_size == 0.005
    path.write_text(yaml.safe_dump({"preset": None, "benchmark": "tandt"}))
    assert build_spec("hac", SCENE, config_file=path)[1].voxel_size is None
    path.write_text(yaml.safe_dump({"preset": "moon"}))
    with pytest.raises(ConfigError, match="unknown preset 'moon'"):
        build_spec("hac", SCENE, config_file=path)


def test_workflow_train_config_blocks_are_accepted_by_config(tmp_path):
    """A workflow config's train_config block (with model_by_method, as config files for the workflow are
    written) is a valid --config file: each method takes its own entry, or its base method's."""
    block = {"train": {"checkpoints": 2, "lpips": False},
             "model": {"voxel_size": 0.01},
             "model_by_method": {"hacpp": {"mask_lr_final_per_lambda": 1.0e-4, "mask_lr_final_max": None},
                                 "predictgs": {"sfp": {"log2_grid": 11}}}}
    path = tmp_path / "block.yaml"
    path.write_text(yaml.safe_dump(block))
    _, hacpp = build_spec("hacpp", SCENE, config_file=path)
    assert hacpp.mask_lr_final_per_lambda == 1e-4 and hacpp.mask_lr_final_max is None
    _, sfp_only = build_spec("predictgs_sfp_only", SCENE, config_file=path)
    assert sfp_only.sfp.log2_grid == 11 and sfp_only.voxel_size == 0.01
    _, hac = build_spec("hac", SCENE, config_file=path)
    assert hac.voxel_size == 0.01


def test_presets_command_lists_every_preset(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["preset"] for row in rows] == list(PRESETS) == ["embedded", "mipnerf360", "tandt", "db",
                                                                "nerf_synthetic"]
    assert {row["preset"]: row["voxel_size"] for row in rows}["tandt"] == 0.01
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    assert all(f"{name}:" in text for name in PRESETS) and "0.005" in text


def test_unknown_preset_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--method", "hac", "--scene", SCENE, "--out", "x", "--preset", "moon"])
    assert info.value.code == 2 and "moon" in capsys.readouterr().err
