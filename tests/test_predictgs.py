"""Predict-GS: the progressive downsampling schedule, the residual decoder, and short CPU training runs
against HAC and the SFP-only ablation."""

import math

import pytest
import torch
import yaml

from predictgs.data.synth import generate_scene
from predictgs.methods.predict_gs import PredictGS, PredictGSConfig
from predictgs.pipeline.train import run_training
from predictgs.train.curriculum import Curriculum, CurriculumConfig, StepState, downsampling_scale

# --- the schedule (eq. 6 and its ablation variants) ------------------------------------------------


def test_cosine_schedule_starts_at_ds_init_rises_monotonically_and_ends_at_full_resolution():
    T = 9000
    values = [downsampling_scale("cosine", t, T, 0.7) for t in range(0, 12000, 50)]
    assert values[0] == pytest.approx(0.7)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert all(v == 1.0 for t, v in zip(range(0, 12000, 50), values) if t >= T)
    # Eq. 6 at the half-way point: delta_e + (delta_s - delta_e) / 2.
    assert downsampling_scale("cosine", T // 2, T, 0.7) == pytest.approx(0.85)
    assert downsampling_scale("cosine", T // 4, T, 0.5) == pytest.approx(1.0 - 0.25 * (1 + math.cos(math.pi / 4)))


def test_linear_none_and_off_variants():
    T, stage1 = 9000, 5000
    assert downsampling_scale("linear", 0, T, 0.6) == pytest.approx(0.6)
    assert downsampling_scale("linear", T // 2, T, 0.6) == pytest.approx(0.8)
    assert downsampling_scale("linear", T, T, 0.6) == 1.0
    # none: the initial scale through stage 1, full resolution in stage 2.
    assert downsampling_scale("none", 0, T, 0.7, stage1_end=stage1) == 0.7
    assert downsampling_scale("none", stage1 - 1, T, 0.7, stage1_end=stage1) == 0.7
    assert downsampling_scale("none", stage1, T, 0.7, stage1_end=stage1) == 1.0
    assert all(downsampling_scale("off", t, T, 0.7) == 1.0 for t in (0, 100, 9000))
    with pytest.raises(ValueError):
        downsampling_scale("exponential", 0, T, 0.7)


def test_training_scale_follows_the_paper_milestones_as_fractions():
    curriculum = Curriculum(PredictGSConfig().curriculum, total=300)  # 9k/30k -> 90 iterations of downsampling
    assert curriculum.state(1).downsample == pytest.approx(0.7)
    assert curriculum.state(91).downsample == 1.0
    assert curriculum.state(45).downsample < curriculum.state(60).downsample < 1.0
    # HAC's phases: plain to 3k/30k, noise to 10k/30k, then the entropy model; stage 2 from 5k/30k.
    assert [curriculum.state(i).quantisation for i in (30, 31, 100, 101)] == ["none", "noise", "noise", "entropy"]
    assert not curriculum.state(50).residual and curriculum.state(51).residual
    assert curriculum.state(100).update_bounds and not curriculum.state(101).update_bounds


def test_the_two_readings_of_no_progressive_training():
    """"w/o PT" (Table 4): predictgs_no_pt keeps the two stages and turns the downsampling off;
    predictgs_no_pt_one_stage turns both off (the residual branch trains from the first iteration)."""
    from predictgs.methods import method_config

    two_stages = Curriculum(method_config("predictgs_no_pt").curriculum, total=300)
    one_stage = Curriculum(method_config("predictgs_no_pt_one_stage").curriculum, total=300)
    assert not two_stages.state(50).residual and two_stages.state(51).residual
    assert one_stage.state(1).residual
    for curriculum in (two_stages, one_stage):
        assert {curriculum.state(i).downsample for i in (1, 50, 90, 300)} == {1.0}
        assert [curriculum.state(i).quantisation for i in (30, 31, 101)] == ["none", "noise", "entropy"]


@pytest.mark.parametrize("method", ["predictgs", "predictgs_hacpp"])
def test_hash_bits_are_normalised_per_coded_value_unless_configured(method):
    """The rate term divides the hash bits by N x the values coded per anchor: 25 + 6 + 30 = 61 for
    Predict-GS (HAC: 50 + 6 + 30 = 86); hash_values_per_anchor: 86 reads HAC's normaliser with f_c's 50."""
    from baselines.hac import StepTables
    from predictgs.methods import method_class, method_config

    small = {"context": {"log2_grid": 6, "log2_plane": 6}, "sfp": {"log2_grid": 6, "log2_plane": 6}}
    points = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)).numpy()
    hashes = {}
    for per_anchor in (None, 86):
        model = method_class(method).from_points(method_config(method, {**small, "hash_values_per_anchor": per_anchor}),
                                                 points, extent=1.0)
        torch.manual_seed(0)
        tables = StepTables(model.binary_tables())
        hashes[per_anchor] = (model.hash_values_per_anchor(),
                              float(model.hash_bits(tables).detach())
                              / (model.anchors.num_anchors * model.hash_values_per_anchor()))
        if method == "predictgs":  # the rate term is that hash term when no value is coded
            masks = model.anchors.mask_hard(model.config.mask_threshold)
            assert float(model.rate_terms({}, masks, tables)["rate"]) == pytest.approx(hashes[per_anchor][1])
    assert hashes[None][0] == 61 and hashes[86][0] == 86
    assert hashes[86][1] == pytest.approx(hashes[None][1] * 61 / 86)


# --- the residual branch ------------------------------------------------------------------------------


def test_residual_branch_is_off_in_stage_one_and_starts_as_the_identity():
    # Quantisation noise starts only after both iterations compared below (it would differ between them).
    config = PredictGSConfig(curriculum=CurriculumConfig(noise_from=0.5, entropy_from=0.6, residual_from=1 / 6))
    model = PredictGS.from_points(config, torch.rand(300, 3).numpy() * 2 - 1, extent=2.0)
    total = 600  # stage 1 = first 100 iterations
    curriculum = Curriculum(config.curriculum, total)
    assert not curriculum.state(100).residual and curriculum.state(101).residual
    # Zero-initialised output layers: enabling the branch does not change the prediction.
    from predictgs.model.view import View

    view = View(name="v", viewmat=torch.eye(4), K=torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]),
                width=32, height=24, center=torch.zeros(3))
    view.viewmat[2, 3] = 4.0
    view.center[2] = -4.0
    with torch.no_grad():
        model.anchors.attributes.normal_()
        before, _ = model.gaussians(view, curriculum.state(50))
        after, _ = model.gaussians(view, curriculum.state(150))
    assert before.count > 0
    torch.testing.assert_close(before.colors, after.colors)
    torch.testing.assert_close(before.scales, after.scales)
    # Once MGRD has learned something, the residual changes the Gaussians.
    with torch.no_grad():
        model.mgrd.appearance_head[-1].bias.view(-1, 4)[:, 1:].fill_(0.5)  # colour corrections only
        changed, _ = model.gaussians(view, curriculum.state(150))
    assert not torch.allclose(changed.colors, before.colors)
    # The test-time model always refines, from its cached predicted features.
    model.eval()
    tested, _ = model.gaussians(view)
    assert "predicted" in model.cached_test_state() and tested.count > 0


def test_bit_categories_split_the_feature_into_sfp_and_residual():
    model = PredictGS.from_points(PredictGSConfig(), torch.rand(300, 3).numpy(), extent=1.0)
    bits = model.estimated_bits()
    assert list(bits) == ["anchor", "residual", "sfp", "scaling", "offsets", "hash", "masks", "mlps"]
    sfp_entries = model.sfp.encoding.num_binary_params()
    assert 32 <= bits["sfp"] <= sfp_entries + 32


# --- short training runs on a tiny synthetic scene --------------------------------------------------

ITERATIONS = 240
# Hash tables scaled to a scene of a few thousand anchors (the paper's 2^13 / 2^15 tables are sized for
# ~500k anchors; on a tiny scene their fixed cost would swamp every per-anchor saving).
SMALL_TABLES = {"log2_grid": 9, "log2_plane": 9}
# The anchor-growing threshold is in NDC units: a 48x36 image needs a ~10x larger one than the reference's
# 0.0002 to grow a comparable number of anchors (docs/methods.md); with the reference value the anchors
# multiply and the runs take several times longer without testing anything more.
CURRICULUM = {"noise_from": 0.1, "entropy_from": 0.2, "bbox_update_at": 0.2}
MODEL = {"curriculum": CURRICULUM, "context": SMALL_TABLES, "densify": {"grad_threshold": 0.002}}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "outdoor"
    generate_scene("outdoor", 1, path, width=48, height=36, num_views=10, num_points=400)
    return path


@pytest.fixture(scope="module")
def runs(scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    results = {}
    for method in ("hac", "predictgs", "predictgs_sfp_only"):
        model = dict(MODEL)
        if method.startswith("predictgs"):
            model["sfp"] = SMALL_TABLES
        config = root / f"{method}.yaml"
        config.write_text(yaml.safe_dump({"train": {"lpips": False}, "model": model}))
        results[method] = run_training(method, scene, root / method, lmbda=0.002, iterations=ITERATIONS,
                                       config_file=config, progress=False)
    return results


@pytest.mark.slow
def test_predictgs_trains(runs):
    metrics = runs["predictgs"]
    assert metrics["psnr"] > 16.0
    assert metrics["residual_dim"] == 25 and metrics["schedule"] == "cosine" and metrics["ds_init"] == 0.7


@pytest.mark.slow
def test_residual_compensation_beats_prediction_alone(runs):
    # The same schedule with and without the residual branch (Table 4, "SFP only"). Measured at this scale:
    # 1.0-2.1 dB apart (compiled or reference rasterizer, 1 or 2 threads). Comparing predictgs_no_pt here, as
    # this test once did, mixed two changes (no downsampling and the residual): 0.4-0.8 dB either way.
    assert runs["predictgs"]["psnr"] > runs["predictgs_sfp_only"]["psnr"] + 0.3


@pytest.mark.slow
def test_predictgs_feature_bits_are_lower_than_hacs(runs):
    ours = runs["predictgs"]["estimated_bits"]
    hac = runs["hac"]["estimated_bits"]
    assert ours["residual"] + ours["sfp"] < hac["feat"]
