"""Building a model (``from_points``, ``empty`` for loading a checkpoint or decoding a bitstream, and the
synthetic models of the codec tests) draws its initial networks from a seeded CPU generator and leaves
the caller's random state alone: the CPU generator is restored, and no CUDA generator is reseeded
(``torch.manual_seed`` would reseed every CUDA generator, which ``fork_rng(devices=[])`` does not save).
Checked on the CPU by recording CUDA seeding calls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from predictgs.methods import method_class, method_config
from predictgs.methods.synthetic import random_hac

SMALL = {"context": {"log2_grid": 6, "log2_plane": 6, "hidden_dim": 16},
         "sfp": {"log2_grid": 6, "log2_plane": 6, "fusion_hidden": 16}}


def small_config(name: str):
    fields = {f.name for f in dataclasses.fields(method_class(name).config_class)}
    return method_config(name, {k: v for k, v in SMALL.items() if k in fields})


@pytest.fixture
def cuda_seeding(monkeypatch):
    calls = []
    for name in ("manual_seed", "manual_seed_all", "seed", "seed_all", "set_rng_state", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, lambda *args, _name=name, **kwargs: calls.append(_name))
    return calls


BUILDERS = {
    "from_points": lambda name: method_class(name).from_points(
        small_config(name), np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32), extent=2.0,
        seed=5),
    "empty": lambda name: method_class(name).empty(small_config(name), extent=2.0, voxel_size=0.05,
                                                   num_anchors=10),
}


@pytest.mark.parametrize("name", ["hac", "predictgs"])
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_building_leaves_the_callers_random_state_alone(cuda_seeding, name, builder):
    cpu_state = torch.get_rng_state()
    first = BUILDERS[builder](name)
    assert cuda_seeding == [], f"{builder} reseeded the CUDA generators: {cuda_seeding}"
    assert torch.equal(torch.get_rng_state(), cpu_state)
    torch.rand(7)  # a different CPU state: the same networks all the same
    second = BUILDERS[builder](name)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key


def test_synthetic_models_leave_the_cuda_random_state_alone(cuda_seeding):
    from baselines.hac import HACConfig

    config = dataclasses.replace(HACConfig(), context=dataclasses.replace(HACConfig().context, **SMALL["context"]))
    cpu_state = torch.get_rng_state()
    first = random_hac(50, seed=2, config=config)
    assert cuda_seeding == []
    assert torch.equal(torch.get_rng_state(), cpu_state)
    second = random_hac(50, seed=2, config=config)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key
