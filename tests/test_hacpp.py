"""HAC++ and Predict-GS on HAC++'s entropy model: the channel context, the mixture coder, the lattice
anchors, the masks, and short CPU training runs against HAC."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from baselines.hacpp import HACpp, HACppConfig
from predictgs.codec.container import ByteReader, ByteWriter
from predictgs.codec.mixture import decode_mixture, encode_mixture, mixture_code_bits
from predictgs.entropy.anchor import ContextConfig
from predictgs.entropy.channel import ChannelContext, ChannelContextEntropyModel, chunk_sizes
from predictgs.errors import BitstreamError
from predictgs.methods import method_class
from predictgs.methods.synthetic import random_hac
from predictgs.pipeline.codec import check_round_trip, decode_model, encode_model

SMALL = ContextConfig(log2_grid=6, log2_plane=6, hidden_dim=16)


# -- the channel context --------------------------------------------------------------------------------
def test_chunks_and_causality():
    assert chunk_sizes(50, 5) == [10] * 5 and chunk_sizes(25, 5) == [5] * 5 and chunk_sizes(7, 3) == [3, 2, 2]
    torch.manual_seed(0)
    context = ChannelContext(20, 4)
    values, hyper = torch.randn(6, 20), torch.randn(6, 60)
    mean, scale, logit = context(values, hyper)
    assert mean.shape == scale.shape == logit.shape == (6, 20)
    # Chunk c reads only the chunks before it: changing chunk 2 leaves chunks 0..2's parameters alone.
    changed = values.clone()
    changed[:, 10:15] += 5.0
    mean2, _, _ = context(changed, hyper)
    assert torch.equal(mean[:, :15], mean2[:, :15]) and not torch.allclose(mean[:, 15:], mean2[:, 15:])


def test_mixture_likelihood_is_a_distribution_per_chunk():
    torch.manual_seed(1)
    model = ChannelContextEntropyModel({"feat": 10, "scaling": 6, "offsets": 12},
                                       {"feat": 1.0, "scaling": 0.001, "offsets": 0.2}, SMALL, chunks=2)
    model.eval()
    positions = torch.rand(4, 3)
    dist = model.distributions(positions)
    assert dist.logits.shape == (4, 10)
    grid = torch.arange(-200, 201, dtype=torch.float32)
    dist.step["feat"] = torch.ones(4, 1)  # bins of 1 (Q = Q0 (1 + tanh(adj)) is about 1 at initialisation)
    centres = {"feat": torch.tensor(0.0), "scaling": torch.tensor(0.0), "offsets": torch.tensor(0.0)}
    # Sum each chunk's likelihood over the bins with the other chunk held fixed (a chunk's distribution
    # depends on the earlier chunks' values, not on its own): each sums to 1 (+ 1e-6 per bin, HAC's floor).
    for varied in (slice(0, 5), slice(5, 10)):
        total = torch.zeros(4, 5)
        for q in grid:
            feat = torch.full((4, 10), 0.7)
            feat[:, varied] = q
            values = {"feat": feat, "scaling": torch.zeros(4, 6), "offsets": torch.zeros(4, 12)}
            _, likelihoods = model(values, dist, centres)
            total += likelihoods["feat"][:, varied]
        assert torch.allclose(total, torch.ones_like(total), atol=1e-3), total


def test_channel_context_learns_what_the_hash_context_cannot():
    """Features whose second half repeats the first (unpredictable from the position): the channel
    context's mixture codes them in fewer bits than HAC's hash context alone, after the same fitting."""
    from predictgs.entropy.anchor import AnchorEntropyModel

    torch.manual_seed(2)
    n, dim = 512, 8
    first = torch.randn(n, dim // 2) * 4
    features = torch.cat([first, first + 0.1 * torch.randn(n, dim // 2)], dim=1)
    positions = torch.rand(n, 3)
    groups, steps = {"feat": dim, "scaling": 6, "offsets": 6}, {"feat": 1.0, "scaling": 0.001, "offsets": 0.2}
    extra = {"scaling": torch.zeros(n, 6), "offsets": torch.zeros(n, 6)}
    centres = {g: torch.tensor(0.0) for g in groups}
    bits = {}
    for name, model in (("hac", AnchorEntropyModel(groups, steps, SMALL)),
                        ("hacpp", ChannelContextEntropyModel(groups, steps, SMALL, chunks=2))):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(300):
            dist = model.distributions(positions)
            _, likelihoods = model({"feat": features, **extra}, dist, centres)
            loss = -torch.log2(likelihoods["feat"]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        bits[name] = model.bits({"feat": features, **extra}, positions, centres)["feat"]
    assert bits["hacpp"] < 0.8 * bits["hac"], bits


# -- the mixture coder ----------------------------------------------------------------------------------
def random_mixtures(n, seed, spread=1.0, outliers=0.0):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(2, n, generator=generator) * 3
    scale = (torch.rand(2, n, generator=generator) * 2 + 0.05) * spread
    weight = torch.softmax(torch.randn(2, n, generator=generator), dim=0)
    step = torch.rand(n, generator=generator) * 0.5 + 0.5
    pick = (torch.rand(n, generator=generator) < weight[0]).long()
    x = torch.normal(mean.gather(0, pick[None])[0], scale.gather(0, pick[None])[0], generator=generator)
    symbols = torch.round(x / step).to(torch.int64)
    if outliers:
        hit = torch.rand(n, generator=generator) < outliers
        symbols[hit] += torch.randint(-5000, 5000, (int(hit.sum()),), generator=generator)
    return symbols, mean, scale, weight, step


@pytest.mark.parametrize("spread,outliers", [(0.05, 0.0), (1.0, 0.0), (30.0, 0.0), (1.0, 0.002)])
def test_mixture_coder_round_trip_and_estimate(spread, outliers):
    symbols, mean, scale, weight, step = random_mixtures(20000, seed=3, spread=spread, outliers=outliers)
    out = ByteWriter()
    encode_mixture(out, symbols, mean, scale, weight, step)
    data = out.getvalue()
    reader = ByteReader(data, "test")
    assert torch.equal(decode_mixture(reader, mean, scale, weight, step), symbols)
    reader.expect_end()
    estimate = mixture_code_bits(symbols, mean, scale, weight, step).total_bytes
    if len(data) >= 2000:
        assert abs(len(data) - estimate) <= 0.01 * len(data), (len(data), estimate)


def test_mixture_coder_refuses_garbage():
    symbols, mean, scale, weight, step = random_mixtures(500, seed=4)
    out = ByteWriter()
    encode_mixture(out, symbols, mean, scale, weight, step)
    data = bytearray(out.getvalue())
    with pytest.raises(BitstreamError):
        decode_mixture(ByteReader(bytes(data[:10]), "test"), mean, scale, weight, step)
    with pytest.raises(BitstreamError):
        decode_mixture(ByteReader(bytes(data), "test"), mean, scale.abs() * 0, weight, step)


# -- the method ---------------------------------------------------------------------------------------------
def test_mask_learning_rate_grows_with_lambda_as_the_reference():
    config = HACppConfig()
    assert HACpp.resolve_config(config, 0.001).lr_masks_scaled == (0.01, 5e-4)
    assert HACpp.resolve_config(config, 0.004).lr_masks_scaled == (0.01, 1.5e-3)  # capped (Mip-NeRF360)
    tandt = HACppConfig(mask_lr_final_per_lambda=1e-4, mask_lr_final_max=None)
    assert HACpp.resolve_config(tandt, 0.004).lr_masks_scaled[1] == pytest.approx(4e-4)
    assert HACpp.resolve_config(HACppConfig(mask_lr_final_per_lambda=None), 0.004).lr_masks_scaled == (0.01, 1e-4)


def test_anchors_on_the_voxel_lattice_and_masks_after_spawning():
    config = HACppConfig(context=SMALL, voxel_size=0.05)
    points = torch.rand(400, 3).numpy() * 2 - 1
    model = HACpp.from_points(config, points, extent=2.0)
    positions = model.anchor_positions()
    lattice = positions / 0.05
    assert torch.allclose(lattice, lattice.round(), atol=1e-4)
    codes = model.anchor_codes(model.anchors.positions)
    assert torch.equal(model.positions_from_codes(codes), positions)
    # Masks: in training the spawned Gaussians keep their opacity gated; at test time masked ones go.
    with torch.no_grad():
        model.anchors.masks[:, ::2] = -20.0  # every other offset off
    from predictgs.model.view import View
    from predictgs.train.curriculum import Curriculum

    view = View(name="v", viewmat=torch.eye(4), K=torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]),
                width=32, height=24, center=torch.zeros(3))
    view.viewmat[2, 3] = 3.0
    view.center[2] = -3.0
    step = Curriculum(config.curriculum, 100).state(1)
    trained, _ = model.gaussians(view, step)
    assert (trained.opacities == 0).any() and (trained.scales == 0).any()
    model.eval()
    tested, _ = model.gaussians(view)
    assert (tested.opacities > 0).all() and tested.count < trained.count


@pytest.mark.parametrize("name", ["hacpp", "predictgs_hacpp"])
def test_random_models_round_trip(name):
    cls = method_class(name)
    small = {"context": SMALL}
    if name == "predictgs_hacpp":
        from predictgs.methods.predict_gs import SFPConfig

        small["sfp"] = SFPConfig(log2_grid=6, log2_plane=6, fusion_hidden=16)
    model = random_hac(600, seed=5, config=cls.config_class(**small), method_class=cls)
    encoded = encode_model(model)
    decoded = decode_model(encoded.data)
    assert type(decoded.model) is cls
    check_round_trip(model, decoded.model)
    assert encoded.section_bytes[model.attribute_group] > 0


# -- short training runs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from predictgs.data.synth import generate_scene
    from predictgs.pipeline.train import run_training

    root = tmp_path_factory.mktemp("hacpp")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=8, num_points=300)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"lpips": False}, "model": {
        "curriculum": {"noise_from": 0.1, "entropy_from": 0.2, "bbox_update_at": 0.2},
        "context": {"log2_grid": 9, "log2_plane": 9}}}))
    return {method: run_training(method, scene, root / method, iterations=150, lmbda=0.001, config_file=config,
                                 progress=False) for method in ("hac", "hacpp")}, root


@pytest.mark.slow
def test_hacpp_trains_and_its_channel_context_lowers_the_feature_bits(runs):
    metrics, root = runs
    assert metrics["hacpp"]["psnr"] > 11.0 and math.isfinite(metrics["hacpp"]["psnr"])
    # At 40x30 and 150 iterations the two PSNRs differ by up to a dB either way from run to run (measured over
    # training seeds 0-2 and two rasterizer builds: +0.65, -0.24, -0.78, -0.96 dB): a broken HAC++ loses far more.
    assert metrics["hacpp"]["psnr"] > metrics["hac"]["psnr"] - 1.5
    # Same lambda, same budget: the mixture with the channel context needs fewer bits per feature.
    per_anchor = {m: metrics[m]["estimated_bits"]["feat"] / metrics[m]["num_anchors"] for m in metrics}
    assert per_anchor["hacpp"] < 0.9 * per_anchor["hac"], per_anchor


@pytest.mark.slow
def test_trained_hacpp_encodes_and_decodes_exactly(runs):
    from predictgs.pipeline.train import load_run

    _, root = runs
    _, model = load_run(root / "hacpp")
    encoded = encode_model(model)
    decoded = decode_model(encoded.data)
    check_round_trip(model, decoded.model)
    estimated = model.estimated_bits()
    for stream in ("feat", "scaling", "offsets"):
        size = encoded.section_bytes[stream]
        if size >= 2000:
            assert abs(8 * size - estimated[stream]) <= 0.05 * 8 * size, (stream, size, estimated[stream])
