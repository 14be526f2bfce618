"""The voxel size of the anchor methods: the configured one, or the automatic choice, and train.log and
metrics.json say which and why."""

import json

import numpy as np
import pytest
import yaml

from predictgs.data.synth import generate_scene
from predictgs.methods import method_class, method_config
from predictgs.model.anchors import VOXEL_AUTOMATIC, VOXEL_FROM_CONFIG, auto_voxel_size
from predictgs.pipeline.train import run_training


def test_the_model_records_where_its_voxel_size_comes_from():
    points = np.random.default_rng(0).random((200, 3))
    automatic = method_class("hac").from_points(method_config("hac"), points, 1.0)
    assert automatic.voxel_size == pytest.approx(auto_voxel_size(points))
    assert automatic.voxel_size_source == VOXEL_AUTOMATIC
    assert VOXEL_AUTOMATIC.startswith("automatic: median nearest-neighbour spacing / 16")
    configured = method_class("hac").from_points(method_config("hac", {"voxel_size": 0.01}), points, 1.0)
    assert (configured.voxel_size, configured.voxel_size_source) == (0.01, VOXEL_FROM_CONFIG)


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "object"
    generate_scene("object", 0, path, width=24, height=18, num_views=4, num_points=200)
    return path


@pytest.mark.parametrize("voxel_size, source", [(None, VOXEL_AUTOMATIC), (0.05, VOXEL_FROM_CONFIG)])
def test_train_log_and_metrics_say_which_voxel_size_and_why(tiny_scene, tmp_path, voxel_size, source):
    config = tmp_path / "config.yaml"
    model = {} if voxel_size is None else {"voxel_size": voxel_size}
    config.write_text(yaml.safe_dump({"train": {"lpips": False, "checkpoints": 1}, "model": model}))
    metrics = run_training("scaffold", tiny_scene, tmp_path / "run", iterations=2, config_file=config,
                           progress=False)
    assert metrics["voxel_size_source"] == source
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["voxel_size_source"] == source
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"(voxel size {metrics['voxel_size']:.6g}, {source})" in log


def test_a_preset_voxel_size_is_reported_as_the_preset_s(tiny_scene, tmp_path):
    from predictgs.model.anchors import VOXEL_FROM_PRESET
    from predictgs.presets import PRESETS

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"lpips": False, "checkpoints": 1}}))
    metrics = run_training("scaffold", tiny_scene, tmp_path / "run", iterations=2, config_file=config,
                           preset="tandt", progress=False)
    assert metrics["voxel_size"] == PRESETS["tandt"].voxel_size
    assert metrics["voxel_size_source"] == VOXEL_FROM_PRESET
    assert f"(voxel size {metrics['voxel_size']:.6g}, {VOXEL_FROM_PRESET})" in (tmp_path / "run" / "train.log").read_text()
    # the same value given by the user is the user's
    config.write_text(yaml.safe_dump({"train": {"lpips": False, "checkpoints": 1},
                                      "model": {"voxel_size": PRESETS["tandt"].voxel_size}}))
    mine = run_training("scaffold", tiny_scene, tmp_path / "run2", iterations=2, config_file=config, progress=False)
    assert mine["voxel_size_source"] == VOXEL_FROM_CONFIG
