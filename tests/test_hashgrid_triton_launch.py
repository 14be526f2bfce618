"""How the fused hash-grid kernels are launched and compiled for a GPU, checked without one.

- Launches are recorded (the kernels replaced by recorders) on ``FakeTensorMode`` tensors that live on
  ``cuda:1``: every launch must run under ``torch.cuda.device`` of the tensors' device, since Triton
  launches on the current CUDA device.
- The kernels are compiled for sm_90 on the CPU (Triton compiles to PTX and cubin without a GPU): the
  float32 renormalisation must divide with ``div.rn`` (correctly rounded, as torch does), not Triton's
  default ``div.full.f32`` (approximate, up to 2 ulp).
- Triton's specialisation keys (the CUDA backend's binder, computed on the CPU) of the launches of
  training-like steps with every kind of point count (1, multiples of 16, others) must all be among those
  of ``benchmarks/gpu_check.py``'s warm-up: nothing is compiled once the timing has started.

The numerics of the kernels are tested under Triton's interpreter in ``test_hashgrid_triton.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton is not installed (it ships with torch's CUDA wheels)")


@pytest.fixture
def fused(monkeypatch):
    """predictgs.nn.hashgrid_triton with compiled (not interpreted) kernel objects; the backend forced to
    the kernels, allowed on the CPU as under the interpreter."""
    from predictgs.nn import hashgrid

    module = hashgrid._fused()
    if module is None:
        pytest.skip(f"triton does not import: {hashgrid._fused_import_error}")
    if not hasattr(module._encode_fwd_kernel, "params"):
        pytest.skip("the kernels were imported under TRITON_INTERPRET=1 (interpreted, not compiled)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # lets use_fused take the kernels for CPU tensors
    monkeypatch.setattr(hashgrid, "BACKEND", "triton")
    return module


@dataclasses.dataclass
class Launch:
    kernel: object  # the real JITFunction
    grid: tuple
    args: tuple
    kwargs: dict
    cuda_device: object  # the device selected by torch.cuda.device at launch time, None if none


class CudaDeviceRecorder:
    """Stands in for ``torch.cuda.device``: records which device is selected."""
    selected: list = []

    def __init__(self, device):
        self.device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)

    def __enter__(self):
        CudaDeviceRecorder.selected.append(self.device)

    def __exit__(self, *exc):
        CudaDeviceRecorder.selected.pop()
        return False


def record_launches(monkeypatch, module) -> list[Launch]:
    launches: list[Launch] = []

    class Recorder:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                selected = CudaDeviceRecorder.selected[-1] if CudaDeviceRecorder.selected else None
                launches.append(Launch(self.kernel, grid, args, kwargs, selected))
            return launch

    for name in ("_encode_fwd_kernel", "_encode_bwd_kernel"):
        monkeypatch.setattr(module, name, Recorder(getattr(module, name)))
    return launches


def small_encoding(dtype=torch.float32):
    from predictgs.nn.hashgrid import GridPlaneEncoding

    return GridPlaneEncoding(log2_grid=6, log2_plane=6).to(dtype)


# -- 1: the device guard ----------------------------------------------------------------------------------
def test_launches_run_under_the_tensors_cuda_device(fused, monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    launches = record_launches(monkeypatch, fused)
    monkeypatch.setattr(torch.cuda, "device", CudaDeviceRecorder)
    encoding = small_encoding()
    grids = ((encoding.grid, (0, 1, 2)), *zip(encoding.planes, encoding.PLANE_AXES))
    with FakeTensorMode():
        x = torch.empty(300, 3, device="cuda:1")
        tables = [torch.empty(t.params.shape, device="cuda:1", requires_grad=True) for t in encoding.tables()]
        out = fused.FusedEncode.apply(x, grids, *tables)
        assert out.device == torch.device("cuda:1")
        ctx = SimpleNamespace(saved_tensors=(x,), needs_input_grad=(False, False, *[True] * len(tables)),
                              grids=grids, table_shapes=[t.shape for t in tables])
        grads = fused.FusedEncode.backward(ctx, torch.empty_like(out))
    assert [g.device for g in grads[2:]] == [torch.device("cuda:1")] * len(tables)
    names = [launch.kernel.fn.__name__ for launch in launches]
    assert names == ["_encode_fwd_kernel"] * 4 + ["_encode_bwd_kernel"] * 4
    assert [launch.cuda_device for launch in launches] == [torch.device("cuda:1")] * 8
    assert CudaDeviceRecorder.selected == []


# -- specialisation keys and offline compilation ----------------------------------------------------------
def cuda_backend():
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    target = GPUTarget("cuda", 90, 32)
    return target, make_backend(target)


def bind(launch: Launch, backend):
    from triton.runtime.jit import create_function_from_signature

    kernel = launch.kernel
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.kwargs)
    return bound, specialization, options


def specialisation_key(launch: Launch, backend) -> tuple:
    """What Triton's launcher looks its compiled variants up by (JITFunction.run's cache key)."""
    _, specialization, options = bind(launch, backend)
    return launch.kernel.fn.__name__, repr(specialization), repr(sorted(options.items()))


def compile_ptx(launch: Launch) -> str:
    """Compile the launched kernel variant for sm_90, as JITFunction.run would, and return its PTX."""
    import triton
    from triton.compiler import ASTSource

    target, backend = cuda_backend()
    kwargs = dict(launch.kwargs)
    bound, specialization, options = bind(launch, backend)
    options, signature, constexprs, attrs = launch.kernel._pack_args(backend, kwargs, bound, specialization,
                                                                     options)
    compiled = triton.compile(ASTSource(launch.kernel, signature, constexprs, attrs), target=target,
                              options=options.__dict__)
    return compiled.asm["ptx"]


def encode_and_backward(encoding, n: int, dtype=torch.float32, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=gen, dtype=dtype)
    tables = encoding.binarised()
    out = encoding(x, tables)
    out.backward(torch.ones_like(out))


# -- 2: correctly rounded division in the compiled kernels ------------------------------------------------
@pytest.mark.slow
def test_compiled_kernels_divide_correctly_rounded(fused, monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton-cache"))
    launches = record_launches(monkeypatch, fused)
    encode_and_backward(small_encoding(), 200)
    encode_and_backward(small_encoding(torch.float64), 200, torch.float64)
    grid3d = [launch for launch in launches if launch.kwargs["DIMS"] == 3]
    assert [(launch.kernel.fn.__name__, launch.args[0].dtype) for launch in grid3d] == [
        ("_encode_fwd_kernel", torch.float32), ("_encode_bwd_kernel", torch.float32),
        ("_encode_fwd_kernel", torch.float64), ("_encode_bwd_kernel", torch.float64)]
    for launch in grid3d:
        ptx = compile_ptx(launch)
        divisions = set(re.findall(r"\bdiv\.[a-z0-9.]+", ptx))
        precision = "f32" if launch.args[0].dtype == torch.float32 else "f64"
        assert f"div.rn.{precision}" in divisions, (launch.kernel.fn.__name__, divisions)
        assert not {d for d in divisions if d.startswith(("div.full", "div.approx"))}, divisions


# -- 3: one variant per (kernel, dims, dtype), all compiled by gpu_check's warm-up ------------------------
def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_method(name: str):
    from predictgs.methods import method_class, method_config

    overrides = {}
    fields = {f.name for f in dataclasses.fields(method_class(name).config_class)}
    if "context" in fields:
        overrides["context"] = {"log2_grid": 6, "log2_plane": 6, "hidden_dim": 16}
    if "sfp" in fields:
        overrides["sfp"] = {"log2_grid": 6, "log2_plane": 6, "fusion_hidden": 16}
    points = np.random.default_rng(0).uniform(-1, 1, (100, 3)).astype(np.float32)
    return method_class(name).from_points(method_config(name, overrides), points, extent=2.0)


def test_warm_up_compiles_every_variant_a_training_step_launches(fused, monkeypatch):
    from predictgs.nn.hashgrid import GridPlaneEncoding

    gpu_check = load_gpu_check()
    _, backend = cuda_backend()
    launches = record_launches(monkeypatch, fused)
    model = small_method("predictgs")
    encodings = [m for m in model.modules() if isinstance(m, GridPlaneEncoding)]
    assert len(encodings) == 2  # HAC's context model and Predict-GS's Spatial Feature Pool

    gpu_check.warm_up_kernels(model, "cpu")
    warmed = {specialisation_key(launch, backend) for launch in launches}
    assert len(launches) == 16  # 2 encodings x (3D grid + 3 planes) x (forward + backward)

    launches.clear()
    # Visible-anchor counts of training steps: 1 and multiples of 16 are what Triton specialises on.
    for step, n in enumerate((1, 16, 17, 32, 100, 128, 129, 256, 1000)):
        for encoding in encodings:
            encode_and_backward(encoding, n, seed=step)
    assert len(launches) == 9 * 16
    trained = {specialisation_key(launch, backend) for launch in launches}
    assert trained <= warmed, f"{len(trained - warmed)} variants would be compiled after the warm-up"
    # forward and backward, of the 3D grid and of the planes (the planes' columns are not specialised)
    assert len(warmed) == 4
