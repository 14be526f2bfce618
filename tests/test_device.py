"""Device correctness, checked on the CPU: every bug class that made the first GPU run crash is caught
here, with no GPU.

- Every piece of model state follows ``model.to(device)``: each method and each decoded model is moved
  to the ``meta`` device and every tensor reachable from it (module attributes, containers, nested
  objects) must have left the CPU.
- No tensor is created on the CPU inside a training step or a test-time frame: the step runs under a
  ``TorchFunctionMode`` that records every tensor factory called from the project's code without an
  explicit device.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from predictgs.entropy.anchor import ContextConfig
from predictgs.methods import method_class, method_config, registry
from predictgs.model.view import View
from predictgs.train.curriculum import Curriculum

PROJECT = Path(__file__).resolve().parents[1]
SMALL = {"log2_grid": 6, "log2_plane": 6, "hidden_dim": 16}


def small_config(name: str):
    overrides = {}
    fields = {f.name for f in dataclasses.fields(method_class(name).config_class)}
    if "context" in fields:
        overrides["context"] = SMALL
    if "sfp" in fields:
        overrides["sfp"] = {"log2_grid": 6, "log2_plane": 6, "fusion_hidden": 16}
    return method_config(name, overrides)


def build(name: str, anchors: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, (anchors, 3)).astype(np.float32)
    return method_class(name).from_points(small_config(name), points, extent=2.0, seed=seed)


def cpu_tensors(root, path: str = "model") -> list[str]:
    """Paths of every tensor reachable from ``root`` that lives on the CPU."""
    found, seen = [], set()

    def walk(value, where):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if value.device.type == "cpu":
                found.append(where)
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}[{key!r}]")
        elif isinstance(value, (list, tuple, set, frozenset)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                walk(getattr(value, field.name), f"{where}.{field.name}")
        elif isinstance(value, torch.nn.Module) or (
                hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType, types.FunctionType,
                                                                      types.MethodType))
                and not type(value).__module__.startswith(("torch", "numpy", "builtins"))):
            for key, item in vars(value).items():
                walk(item, f"{where}.{key}")

    walk(root, path)
    return found


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_method_moves_entirely_to_another_device(name):
    model = build(name)
    model.eval()
    model.cached_test_state()  # the test-time cache must follow the device too
    model.to("meta")
    assert cpu_tensors(model) == []


@pytest.mark.parametrize("name", sorted(registry()))
def test_decoded_models_move_entirely_to_another_device(name):
    from predictgs.pipeline.codec import decode_model, encode_model

    decoded = decode_model(encode_model(build(name)).data).model
    assert decoded.render_cache.filled
    decoded.to("meta")
    assert cpu_tensors(decoded) == []


def test_the_walk_finds_a_tensor_left_behind():
    """The check itself: a plain tensor attribute (the bug of the first GPU run) is reported."""
    model = build("hac")

    class Box:  # what AnchorBounds used to be: a plain object holding tensors
        def __init__(self):
            self.lower = torch.zeros(3)

    model.old_box = Box()
    model.to("meta")
    assert cpu_tensors(model) == ["model.old_box.lower"]


# -- no tensor is created on the CPU inside a step ----------------------------------------------------
FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.rand, torch.randn, torch.randint,
             torch.tensor, torch.linspace, torch.eye, torch.randperm, torch.scalar_tensor}


class ExplicitDevice(TorchFunctionMode):
    """Records tensor factories called from the project's code without ``device=``."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            frame = inspect.currentframe().f_back
            while frame is not None and "torch" in Path(frame.f_code.co_filename).parts:
                frame = frame.f_back
            filename = Path(frame.f_code.co_filename) if frame is not None else None
            if filename is not None and PROJECT in filename.parents and "tests" not in filename.parts:
                self.calls.append(f"{func.__name__} at {filename.relative_to(PROJECT)}:{frame.f_lineno}")
        return func(*args, **kwargs)


def a_view() -> View:
    view = View(name="v", viewmat=torch.eye(4), K=torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]),
                width=32, height=24, center=torch.zeros(3))
    view.viewmat[2, 3] = 3.0
    view.center[2] = -3.0
    return view


@pytest.mark.parametrize("name", sorted(registry()))
def test_training_and_test_time_steps_create_no_tensor_on_the_cpu(name, tmp_path):
    from predictgs.render import rasterize
    from predictgs.train.loss import RateDistortionLoss
    from predictgs.train.optim import make_adam

    model = build(name, anchors=300)
    curriculum = Curriculum(model.config.curriculum, total=30)
    optimizer = make_adam(model.param_groups())
    strategy = model.strategy(30)
    loss_fn = RateDistortionLoss(model.default_lmbda, model.config.lambda_dssim)
    view = a_view()
    target = torch.rand(3, view.height, view.width)
    iterations = [1, 5, 12, 20, 30]  # every quantisation phase and residual stage of the curriculum
    mode = ExplicitDevice()
    with mode:
        for iteration in iterations:
            step = curriculum.state(iteration)
            model.begin_step(step)
            neural, terms = model.gaussians(view, step)
            out = rasterize(neural.means, neural.quats, neural.scales, neural.opacities, neural.colors,
                            sh_degree=neural.sh_degree, **view.render_args())
            loss = loss_fn(out.image, target, terms)
            loss.backward()
            with torch.no_grad():
                strategy.step_post_backward(model, neural, out, optimizer, step)
                optimizer.step()
                optimizer.zero_grad()
    assert mode.calls == []
    model.eval()
    model.cached_test_state()  # computed once, at load: the coding network runs on the CPU by design
    mode = ExplicitDevice()
    with mode, torch.no_grad():
        neural, _ = model.gaussians(view)
        rasterize(neural.means, neural.quats, neural.scales, neural.opacities, neural.colors,
                  sh_degree=neural.sh_degree, **view.render_args())
    assert mode.calls == []
    assert {s.quantisation for s in map(curriculum.state, iterations)} >= (
        {"none", "noise", "entropy"} if model.entropy_model() is not None else {"none"})


def test_the_mode_catches_a_cpu_factory():
    mode = ExplicitDevice()
    with mode:
        from predictgs.entropy import functional

        functional.quantize(torch.zeros(3), torch.tensor(0.5), "round")  # fine: no factory
        _ = ContextConfig()
        exec(compile("import torch\ntorch.zeros(3)\n", str(PROJECT / "predictgs" / "fake.py"), "exec"))
    assert len(mode.calls) == 1 and mode.calls[0].startswith("zeros at predictgs/fake.py")


# -- the codec: the coding networks on a device, the coder on the CPU ------------------------------------
CODEC_METHODS = ["hac", "hacpp", "predictgs"]


def _coded_model(name: str, anchors: int, default_sizes: bool = False):
    from predictgs.methods.synthetic import random_hac

    cls = method_class(name)
    config = cls.config_class() if default_sizes else small_config(name)
    return random_hac(anchors, seed=3, config=config, method_class=cls)


@pytest.mark.parametrize("name", CODEC_METHODS)
def test_a_file_written_with_one_thread_decodes_with_two(name):
    """Encoder and decoder compute the same distributions bit for bit whatever the thread count (HAC's
    default network and table sizes, so that the matrix products are large enough to be split)."""
    from predictgs.pipeline.codec import check_round_trip, decode_model, encode_model

    model = _coded_model(name, 3500, default_sizes=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        encoded = encode_model(model)
        torch.set_num_threads(2)
        decoded = decode_model(encoded.data)
    finally:
        torch.set_num_threads(threads)
    check_round_trip(encoded.source, decoded.model)


class _ReachedDevice(Exception):
    pass


@pytest.mark.parametrize("name", CODEC_METHODS)
def test_decode_runs_the_coding_networks_on_the_requested_device(name):
    """``decode_model(data, device)`` evaluates the context networks on ``device`` (here ``meta``, which
    has no values: the decode is stopped at the first network layer that runs there)."""
    from predictgs.pipeline.codec import decode_model, encode_model

    encoded = encode_model(_coded_model(name, 300))
    devices = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.nn.functional.linear:
                devices.append(args[0].device.type)
                if args[0].device.type == "meta":
                    raise _ReachedDevice
            return func(*args, **(kwargs or {}))

    with Spy(), pytest.raises(_ReachedDevice):
        decode_model(encoded.data, "meta")
    assert devices and devices[-1] == "meta"
    devices.clear()
    with Spy():
        decode_model(encoded.data, "cpu")
    assert devices and set(devices) == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CODEC_METHODS)
def test_a_file_written_on_the_cpu_decodes_on_cuda(name):
    from predictgs.pipeline.codec import check_round_trip, decode_model, encode_model

    encoded = encode_model(_coded_model(name, 3500, default_sizes=True))
    check_round_trip(encoded.source, decode_model(encoded.data, "cuda").model)


def test_decode_command_device_option(tmp_path, capsys):
    from predictgs.cli import main
    from predictgs.pipeline.codec import encode_model

    path = tmp_path / "m.pgs"
    path.write_bytes(encode_model(_coded_model("hac", 200)).data)
    assert main(["decode", str(path), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert '"decode_device": "cpu"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["decode", str(path), "-o", str(tmp_path / "out2"), "--device", "tpu"])
    assert info.value.code == 2
    if not torch.cuda.is_available():
        assert main(["decode", str(path), "-o", str(tmp_path / "out3"), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
