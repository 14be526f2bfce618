"""The fused Triton hash-grid kernels against the PyTorch reference.

On the CPU they run under Triton's interpreter (``TRITON_INTERPRET=1``), which must be set before triton is
imported: the checks run in a subprocess (one, shared by the tests below) so that this process's imports do
not matter. Small N and few levels: the interpreter executes every program in Python.

Tolerances, float32: forward rtol 1e-5, atol 1e-6; table gradient rtol 1e-5, atol 1e-5 (the kernels sum
the 2^d corner weights and, in the backward, the atomic contributions in another order than torch).
float64: rtol = atol = 1e-12. A wrong row or a wrong border decision would be off by O(0.1).

On a CUDA machine ``test_compiled_kernels_match_reference_on_cuda`` checks the compiled kernels too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (it ships with torch's CUDA wheels)")

F32 = dict(fwd=(1e-5, 1e-6), grad=(1e-5, 1e-5))
F64 = dict(fwd=(1e-12, 1e-12), grad=(1e-12, 1e-12))

SCRIPT = r'''
import os, json, sys, time
os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
import torch
from predictgs.nn import hashgrid
from predictgs.nn.hashgrid import BinaryHashGrid, GridPlaneEncoding, backend_override

TOL = json.loads(sys.argv[1])
torch.manual_seed(0)
results = {}


def points(n, dims, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dims, generator=gen, dtype=dtype)
    k = n // 8
    x[:k] = torch.randint(0, 2, (k, dims), generator=gen).to(dtype)  # box corners
    x[k:2 * k, 0] = torch.randint(0, 2, (k,), generator=gen).to(dtype)  # box faces
    x[2 * k:3 * k] = x[2 * k:3 * k] * 1.6 - 0.3  # partly outside
    return x


def compare(name, module, x, tol, tables=None):
    grad_out = torch.randn(x.shape[0], module.output_dim, dtype=x.dtype, generator=torch.Generator().manual_seed(7))
    outs, grads = {}, {}
    for backend in ("reference", "triton"):
        module.zero_grad(set_to_none=True)
        with backend_override(backend):
            out = module(x) if tables is None else module(x, tables())
        (out * grad_out).sum().backward()
        outs[backend] = out.detach()
        grads[backend] = [p.grad.clone() for p in module.parameters()]
    entry = {"fwd_max_abs": float((outs["triton"] - outs["reference"]).abs().max()) if x.shape[0] else 0.0,
             "grad_max_abs": max(float((a - b).abs().max()) for a, b in zip(grads["triton"], grads["reference"])),
             "errors": []}
    try:
        torch.testing.assert_close(outs["triton"], outs["reference"], rtol=tol["fwd"][0], atol=tol["fwd"][1])
    except AssertionError as exc:
        entry["errors"].append(f"forward: {exc}")
    for i, (a, b) in enumerate(zip(grads["triton"], grads["reference"])):
        try:
            torch.testing.assert_close(a, b, rtol=tol["grad"][0], atol=tol["grad"][1])
        except AssertionError as exc:
            entry["errors"].append(f"table gradient {i}: {exc}")
    entry["nonzero_grad_rows"] = int(sum((g.abs().sum(-1) > 0).sum() for g in grads["reference"]))
    results[name] = entry


def grid(dims, resolutions, log2, features, dtype=torch.float32):
    g = BinaryHashGrid(dims, resolutions, log2, features).to(dtype)
    with torch.no_grad():
        g.params.uniform_(-1.5, 1.5)  # beyond [-1, 1]: the straight-through mask matters too
    return g


t0 = time.time()
f32, f64 = TOL["f32"], TOL["f64"]
dense = grid(3, (6, 12), 12, 3)
assert bool(dense._dense.all())
compare("dense_3d", dense, points(256, 3, torch.float32, 1), f32)
hashed = grid(3, (40, 2**20), 10, 3)
assert not bool(hashed._dense.any())
compare("hashed_3d", hashed, points(256, 3, torch.float32, 2), f32)
planes = grid(2, (7, 70), 9, 3)
assert planes._dense.tolist() == [True, False]
compare("planes_2d", planes, points(256, 2, torch.float32, 3), f32)

# Exactly on the lattice (pos = x (R - 2) + 0.5 integer, so corners on the border), on the box faces,
# just outside and far outside.
lattice = grid(3, (4, 5, 8, 40), 10, 2)
coords = [(k - 0.5) / (r - 2) for r in (4, 5, 8, 40) for k in range(1, r - 1)] + [0.0, 1.0, 0.5]
values = torch.tensor(coords)
gen = torch.Generator().manual_seed(4)
x = values[torch.randint(0, len(coords), (300, 3), generator=gen)]
x[:20, 1] = torch.tensor([-1e-7, 1 + 1e-7, -0.5, 1.5, 1e6, -1e6, 2.0, -3.0, 1.0000001, -0.0] * 2)
compare("lattice_borders_faces_outside", lattice, x, f32)

x = points(96, 3, torch.float64, 5)
compare("float64", grid(3, (6, 40, 2**20), 10, 3, torch.float64), x, f64)

enc = GridPlaneEncoding()
with torch.no_grad():
    for t in enc.tables():
        t.params.uniform_(-1.5, 1.5)
compare("hac_grid_plane_encoding", enc, points(64, 3, torch.float32, 6), f32)
compare("hac_binarised_once", enc, points(64, 3, torch.float32, 8), f32, tables=enc.binarised)
compare("empty", enc, torch.zeros(0, 3), f32)

# dispatch under the interpreter: auto stays on the reference on the CPU; the forced kernels refuse
# positions that require grad and mixed dtypes
dispatch = {}
x = torch.rand(5, 3)
tables = enc.binarised()
with backend_override("auto"):
    dispatch["auto_on_cpu_uses_reference"] = not hashgrid.use_fused(x, tables)
with backend_override("triton"):
    dispatch["triton_on_cpu_under_interpreter"] = hashgrid.use_fused(x, tables)
    for label, args in (("requires_grad", (x.clone().requires_grad_(), tables)), ("dtype", (x.double(), tables))):
        try:
            hashgrid.use_fused(*args)
            dispatch[f"{label}_refused"] = False
        except ValueError:
            dispatch[f"{label}_refused"] = True
    with torch.no_grad():  # positions that require grad are fine where no graph is recorded
        dispatch["no_grad_positions_accepted"] = hashgrid.use_fused(x.clone().requires_grad_(), tables)
    try:
        from predictgs.nn.hashgrid_triton import encode
        encode(x.clone().requires_grad_(), [(enc.grid, (0, 1, 2))], [tables[0]])
        dispatch["encode_refuses_grad"] = False
    except ValueError:
        dispatch["encode_refuses_grad"] = True
results["dispatch"] = dispatch
results["seconds"] = time.time() - t0
print("RESULTS " + json.dumps(results))
'''


@pytest.fixture(scope="module")
def interpreted():
    if not HAS_TRITON:
        pytest.skip("triton is not installed (it ships with torch's CUDA wheels)")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("PREDICTGS_HASHGRID", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps({"f32": F32, "f64": F64})], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, f"interpreter run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULTS "):])


CASES = ["dense_3d", "hashed_3d", "planes_2d", "lattice_borders_faces_outside", "float64",
         "hac_grid_plane_encoding", "hac_binarised_once", "empty"]


@needs_triton
@pytest.mark.parametrize("case", CASES)
def test_interpreted_kernels_match_reference(interpreted, case):
    entry = interpreted[case]
    assert not entry["errors"], "\n".join(entry["errors"])
    if case != "empty":
        assert entry["nonzero_grad_rows"] > 0


@needs_triton
def test_interpreted_dispatch(interpreted):
    assert interpreted["dispatch"] == {
        "auto_on_cpu_uses_reference": True,
        "triton_on_cpu_under_interpreter": True,
        "requires_grad_refused": True,
        "dtype_refused": True,
        "no_grad_positions_accepted": True,
        "encode_refuses_grad": True,
    }


@needs_triton
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_kernels_match_reference_on_cuda():
    from predictgs.nn import hashgrid
    from predictgs.nn.hashgrid import GridPlaneEncoding, backend_override

    torch.manual_seed(0)
    enc = GridPlaneEncoding().cuda()
    with torch.no_grad():
        for t in enc.tables():
            t.params.uniform_(-1.5, 1.5)
    x = torch.rand(20000, 3, device="cuda")
    x[:100] = torch.randint(0, 2, (100, 3), device="cuda").float()
    x[100:200] = x[100:200] * 1.6 - 0.3
    grad_out = torch.randn(20000, enc.output_dim, device="cuda")
    with backend_override("auto"):
        assert hashgrid.use_fused(x, enc.binarised())
    results = {}
    for backend in ("reference", "triton"):
        enc.zero_grad(set_to_none=True)
        with backend_override(backend):
            out = enc(x)
        (out * grad_out).sum().backward()
        results[backend] = (out.detach(), [t.params.grad.clone() for t in enc.tables()])
    torch.testing.assert_close(results["triton"][0], results["reference"][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results["triton"][1], results["reference"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # sums of up to ~10^4 atomic float32 terms
