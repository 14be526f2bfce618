"""Milestones and learning-rate decays: fractions of the run (default) or the reference code's iterations
(``model.curriculum.milestones: reference``)."""

import pytest
import yaml

from baselines.gaussian_splatting import sh_degree_at
from predictgs.data import load_scene
from predictgs.data.synth import generate_scene
from predictgs.errors import ConfigError
from predictgs.methods import method_config
from predictgs.pipeline.train import build_spec, new_trainer
from predictgs.train.curriculum import Curriculum, schedule_length
from predictgs.train.schedule import ExponentialLR

REFERENCE = {"curriculum": {"milestones": "reference"}}


@pytest.mark.parametrize("total", [300, 15_000, 60_000])
def test_reference_milestones_are_the_reference_codes_iterations(total):
    curriculum = Curriculum(method_config("hac", REFERENCE).curriculum, total)
    assert curriculum.length == 30_000
    # HAC: noise after 3k, the rate (entropy phase) after 10k, the box update at 10k, whatever the run length
    assert [curriculum.quantisation(i) for i in (3000, 3001, 10_000, 10_001)] == ["none", "noise", "noise",
                                                                                 "entropy"]
    assert curriculum.bbox_update_at == 10_000 and curriculum.state(10_000).update_bounds
    predictgs = Curriculum(method_config("predictgs", REFERENCE).curriculum, total)
    assert (predictgs.residual_from, predictgs.ds_until) == (5000, 9000)
    assert not predictgs.state(5000).residual and predictgs.state(5001).residual


def test_fraction_milestones_scale_with_the_run():
    curriculum = Curriculum(method_config("hac").curriculum, 15_000)
    assert curriculum.length == 15_000
    assert [curriculum.quantisation(i) for i in (1500, 1501, 5000, 5001)] == ["none", "noise", "noise", "entropy"]
    assert method_config("hac").curriculum.milestones == "fraction"


def test_schedule_length():
    assert schedule_length("fraction", 1234) == 1234 and schedule_length("reference", 1234) == 30_000
    with pytest.raises(ValueError, match="milestones"):
        schedule_length("iterations", 10)
    with pytest.raises(ConfigError, match="milestones"):
        method_config("hac", {"curriculum": {"milestones": "iterations"}})


def test_3dgs_sh_degree_follows_the_schedule_length():
    step = Curriculum(method_config("3dgs", REFERENCE).curriculum, 300).state(1000)
    config = method_config("3dgs")
    assert sh_degree_at(step.iteration, step.total, config.sh_degree_every, 3) == 1  # 3DGS: +1 at 1000
    short = Curriculum(config.curriculum, 300).state(10)
    assert sh_degree_at(short.iteration, short.total, config.sh_degree_every, 3) == 1  # 1000/30k of 300


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "object"
    generate_scene("object", 0, path, width=24, height=18, num_views=4, num_points=200)
    return path


@pytest.mark.parametrize("milestones, length", [("fraction", 40), ("reference", 30_000)])
def test_trainer_decays_learning_rates_and_grows_anchors_over_the_schedule(tiny_scene, tmp_path, milestones,
                                                                           length):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "train": {"lpips": False},
        "model": {"curriculum": {"milestones": milestones}, "context": {"log2_grid": 6, "log2_plane": 6}}}))
    spec, model_config = build_spec("hac", tiny_scene, config_file=config_file, iterations=40)
    trainer = new_trainer(spec, model_config, load_scene(tiny_scene, spec.protocol), tmp_path / "run",
                          progress=False)
    assert trainer.total == 40 and trainer.curriculum.length == length
    assert trainer.strategy.total == length
    assert trainer.strategy.check_interval == max(1, round(100 * length / 30_000))
    trainer.step(20)
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates["mlp_opacity"] == pytest.approx(ExponentialLR(0.002, 0.00002)(20, length))
    assert rates["hash"] == pytest.approx(ExponentialLR(0.005, 0.00001)(20, length))
