"""Binarised multi-resolution hash grids and planes (HAC's ``GridEncoder``), PyTorch reference + Triton.

Lookup semantics follow HAC's ``GridEncoder`` CUDA kernel, which HAC's context model and Predict-GS's
Spatial Feature Pool both build on:

- positions are normalised to [0,1] with the anchor bounding box; a point outside [0,1] in any coordinate
  gets zeros from every level;
- level with resolution R: pos = x (R - 2) + 0.5, multilinear interpolation over the 2^d corners
  floor(pos) + {0,1} (corner index capped at R - 1);
- corners on the lattice border (index 0 or R - 1 on any axis) are excluded and the remaining weights are
  renormalised by their sum;
- a level whose R^d lattice fits its table is indexed densely (row-major, x fastest); otherwise by the
  spatial hash XOR_i(c_i * prime_i) in uint32 arithmetic, modulo the table size;
- table size per level = min(2^log2_size, R^d) rounded up to a multiple of 8; features are stored
  level-major in one [entries, features] table;
- parameters are binarised by a straight-through sign (+1 if >= 0 else -1; gradient passed where the
  raw value lies in [-1, 1]), initialised U(-1e-4, 1e-4).

Three implementations of the lookup (the binarisation is always the PyTorch ``BinarizeSTE``, applied to the
table before the lookup):

- ``reference``: PyTorch, every device. Differentiable in the table and the positions. The oracle of the
  parity tests.
- ``compiled``: the CPU kernels of :mod:`predictgs.kernels` (:mod:`predictgs.nn.hashgrid_compiled`), built
  on first use: one pass per point and level for the forward, the table gradient summed per level in the
  reference's order (the same bits whatever the thread count). No gradient for the positions.
- ``triton``: fused forward and backward kernels (:mod:`predictgs.nn.hashgrid_triton`): one pass per
  (block of points, level) that interpolates without materialising corner tensors, and a backward that
  accumulates the table gradient with atomic adds. It gives no gradient for the positions (anchor positions
  are fixed buffers in this project) and its table gradient is summed in a run-dependent order.

Which one runs: ``BACKEND`` (module attribute) if set, else the environment variable
``PREDICTGS_HASHGRID``, else ``auto``. ``auto`` takes the Triton kernels when the positions are on a CUDA
device, triton imports, the positions do not require grad, positions and tables share a float32/float64
dtype, and torch's deterministic algorithms are off (or no table gradient is being recorded); the compiled
CPU kernels when the positions are on the CPU, do not require grad, share the tables' float32/float64 dtype
and the kernels build (else the reference, after one warning naming why); otherwise the reference.
``reference`` always takes the reference. ``triton`` and ``compiled`` take their kernels or raise
(positions that require grad, the wrong device, kernels that cannot be loaded, unsupported dtype).

Binarise once per step: ``tables = encoding.binarised()`` gives the binarised tables (the same autograd
graph as ``binary_params()``); ``encoding(x, tables)`` and ``tables.flat()`` (equal to
``encoding.binary_params()``, for the rate term) then share one binarisation.

Sign tables (the codec's float64 context, no gradient): ``encoding.sign_tables()`` gives the same +-1 values
as int8, which the compiled kernel reads directly (converted to the positions' dtype exactly: the same
features bit for bit, from tables an eighth the size of float64 ones, with no float64 copy of the tables
to make); every other backend gets them converted to the positions' dtype first.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .. import kernels
from . import hashgrid_compiled

PRIMES = (1, 2654435761, 805459861)
UINT32_MASK = 0xFFFFFFFF

HAC_GRID_RESOLUTIONS = (18, 24, 33, 44, 59, 80, 108, 148, 201, 275, 376, 514)
HAC_PLANE_RESOLUTIONS = (130, 258, 514, 1026)

BACKEND_ENV = "PREDICTGS_HASHGRID"
BACKENDS = ("auto", "reference", "triton", "compiled")
BACKEND: str | None = None  # overrides $PREDICTGS_HASHGRID when set
FUSED_DTYPES = (torch.float32, torch.float64)


# -- backend selection ---------------------------------------------------------------------------------
def selected_backend() -> str:
    """``BACKEND`` if set, else ``$PREDICTGS_HASHGRID``, else ``auto``."""
    name = BACKEND if BACKEND is not None else os.environ.get(BACKEND_ENV, "")
    name = (name or "auto").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"hash-grid backend must be one of {', '.join(BACKENDS)} "
                         f"(module attribute BACKEND or ${BACKEND_ENV}), got {name!r}")
    return name


@contextlib.contextmanager
def backend_override(name: str | None) -> Iterator[None]:
    """Run a block with ``BACKEND = name`` (None: back to the environment variable)."""
    global BACKEND
    previous = BACKEND
    BACKEND = name
    try:
        selected_backend()
        yield
    finally:
        BACKEND = previous


_fused_module = None
_fused_import_error: str | None = None


def _fused():
    """:mod:`predictgs.nn.hashgrid_triton`, imported on first use (it imports triton), or None."""
    global _fused_module, _fused_import_error
    if _fused_module is None and _fused_import_error is None:
        try:
            from . import hashgrid_triton
        except Exception as exc:  # ImportError, or triton failing to initialise
            _fused_import_error = f"{type(exc).__name__}: {exc}"
        else:
            _fused_module = hashgrid_triton
    return _fused_module


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def fused_unavailable_reason(device) -> str | None:
    """Why the Triton kernels cannot run on ``device`` (None if they can). On the CPU they run only under
    Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is imported), which is for tests."""
    device = torch.device(device)
    if device.type != "cuda" and not (device.type == "cpu" and _interpreting()):
        return f"the kernels need a CUDA device, got {device.type}"
    if _fused() is None:
        return f"triton does not import ({_fused_import_error})"
    return None


def fused_available(device) -> bool:
    return fused_unavailable_reason(device) is None


def use_fused(x: Tensor, tables: Sequence[Tensor]) -> bool:
    """The dispatch rule (see the module docstring)."""
    mode = selected_backend()
    if mode in ("reference", "compiled"):
        return False
    dtypes_ok = x.dtype in FUSED_DTYPES and all(t.dtype == x.dtype for t in tables)
    position_grad = x.requires_grad and torch.is_grad_enabled()
    if mode == "auto":
        if x.device.type != "cuda" or position_grad or not dtypes_ok:
            return False
        recording = torch.is_grad_enabled() and any(t.requires_grad for t in tables)
        if recording and torch.are_deterministic_algorithms_enabled():
            return False  # the atomic adds sum the table gradient in a run-dependent order
        return fused_available(x.device)
    reason = fused_unavailable_reason(x.device)
    if reason is not None:
        raise RuntimeError(f"hash-grid backend 'triton' requested but unavailable: {reason}")
    if position_grad:
        raise ValueError("the fused hash-grid kernels give no gradient for the positions; positions that "
                         "require grad need the reference backend")
    if not dtypes_ok:
        raise ValueError(f"the fused hash-grid kernels take float32 or float64 positions and tables of the "
                         f"same dtype, got {x.dtype} and {[t.dtype for t in tables]}")
    return True


def _lookup_tables(x: Tensor, tables):
    """``tables`` for a lookup of ``x``: int8 sign tables stay int8 where the compiled kernel takes the lookup,
    else become x's dtype (the same values)."""
    if all(t.dtype != torch.int8 for t in tables):
        return tables
    if selected_backend() != "triton" and use_compiled(x, tables):
        return tables
    return type(tables)(t.to(device=x.device, dtype=x.dtype) if t.dtype == torch.int8 else t for t in tables)


def use_compiled(x: Tensor, tables: Sequence[Tensor]) -> bool:
    """Whether the compiled CPU kernels take this lookup (see the module docstring)."""
    mode = selected_backend()
    if mode in ("reference", "triton"):
        return False
    dtypes_ok = x.dtype in FUSED_DTYPES and all(t.dtype in (x.dtype, torch.int8) for t in tables)
    position_grad = x.requires_grad and torch.is_grad_enabled()
    on_cpu = x.device.type == "cpu" and all(t.device.type == "cpu" for t in tables)
    if mode == "auto":
        if not on_cpu or position_grad or not dtypes_ok:
            return False
        if kernels.available():
            return True
        kernels.warn_unavailable("the hash-grid lookup")
        return False
    if not on_cpu:
        raise RuntimeError("hash-grid backend 'compiled' runs on the CPU; the positions are on "
                           f"{x.device.type}")
    if not kernels.available():
        raise RuntimeError(f"hash-grid backend 'compiled' requested but unavailable: {kernels.unavailable_reason()}")
    if position_grad:
        raise ValueError("the compiled hash-grid kernels give no gradient for the positions; positions that "
                         "require grad need the reference backend")
    if not dtypes_ok:
        raise ValueError(f"the compiled hash-grid kernels take float32 or float64 positions, and tables of the "
                         f"same dtype or int8 sign tables, got {x.dtype} and {[t.dtype for t in tables]}")
    return True


# -- binarisation ---------------------------------------------------------------------------------------
class BinarizeSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} forward; identity gradient inside [-1, 1], zero outside."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.where(x >= 0, one, -one)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1)  # the bool mask promotes to 1.0 / 0.0: the same products


def binarize(x: Tensor) -> Tensor:
    return BinarizeSTE.apply(x)


class BinarisedTables(tuple):
    """The binarised tables of an encoding, in ``encoding.tables()`` order. Made once per step and handed
    both to the encoding's forward and to the rate term, so the tables are binarised once."""

    def flat(self) -> Tensor:
        """All entries, flattened; equal to ``encoding.binary_params()``."""
        return torch.cat([t.reshape(-1) for t in self])


def level_table_sizes(resolutions: Sequence[int], dims: int, log2_table_size: int) -> list[int]:
    """Entries per level: min(2^log2, R^d) rounded up to a multiple of 8."""
    sizes = []
    for r in resolutions:
        n = min(1 << log2_table_size, r**dims)
        sizes.append(int(math.ceil(n / 8) * 8))
    return sizes


def _corner_combine(per_axis: Tensor, op) -> Tensor:
    """[L, d, 2, N] values of each axis' low and high corner -> [L, 2^d, N] per corner, corner c taking bit
    i of c for axis i (x fastest), combined over the axes in order 0, 1, ..."""
    out = per_axis[:, 0]
    for axis in range(1, per_axis.shape[1]):
        out = op(out[:, None], per_axis[:, axis, :, None]).flatten(1, 2)
    return out


class _GatherRows(torch.autograd.Function):
    """``table.index_select(0, rows)`` for int32 rows; backward: an index_add with the rows widened to int64
    (the CPU's 2-D index_add is ~15x slower with int32 indices). Both sum in the order of ``rows``, as
    advanced indexing's backward did."""

    @staticmethod
    def forward(ctx, table: Tensor, rows: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.num_entries = table.shape[0]
        return table.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rows,) = ctx.saved_tensors
        grad_table = grad.new_zeros((ctx.num_entries, grad.shape[1])).index_add_(0, rows.long(), grad)
        return grad_table, None


class BinaryHashGrid(nn.Module):
    """A d-dimensional (2 or 3) multi-resolution grid of binarised features."""

    def __init__(self, dims: int, resolutions: Sequence[int], log2_table_size: int, features_per_level: int = 4):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"hash grids are 2D or 3D, got {dims}")
        self.dims = dims
        self.resolutions = tuple(int(r) for r in resolutions)
        self.log2_table_size = log2_table_size
        self.features_per_level = features_per_level
        sizes = level_table_sizes(self.resolutions, dims, log2_table_size)
        dense = [r**dims <= s for r, s in zip(self.resolutions, sizes)]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        if offsets[-1] >= 2**31:
            raise ValueError(f"a hash grid of {offsets[-1]} entries: rows are int32, at most 2^31 - 1 entries")
        # A hashed level's table holds 2^log2 (>= 8) entries: "mod size" is a mask of the low bits, which
        # the int64 products c * prime share with their uint32 wrap-around.
        assert all(d or s & (s - 1) == 0 for d, s in zip(dense, sizes)), sizes
        self.register_buffer("_sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets[:-1], dtype=torch.int32), persistent=False)
        self.register_buffer("_res", torch.tensor(self.resolutions, dtype=torch.long), persistent=False)
        self.register_buffer("_dense", torch.tensor(dense), persistent=False)
        # Per axis and level: the dense stride R^axis or the hash prime; then the mask (size - 1 if hashed).
        mult = [[r**axis if d else PRIMES[axis] for r, d in zip(self.resolutions, dense)] for axis in range(dims)]
        self.register_buffer("_axis_mult", torch.tensor(mult, dtype=torch.long).t().contiguous(), persistent=False)
        self.register_buffer("_hash_mask", torch.tensor([-1 if d else s - 1 for d, s in zip(dense, sizes)],
                                                        dtype=torch.long), persistent=False)
        self._any_dense, self._any_hashed = any(dense), not all(dense)
        self.params = nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-1e-4, 1e-4))

    @property
    def num_levels(self) -> int:
        return len(self.resolutions)

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    @property
    def num_entries(self) -> int:
        return self.params.shape[0]

    def binary_params(self) -> Tensor:
        return binarize(self.params)

    @torch.no_grad()
    def sign_table(self) -> Tensor:
        """The binarised table as int8 +-1 (``binary_params()``'s values; no gradient)."""
        return (self.params >= 0).to(torch.int8) * 2 - 1

    def tables(self) -> list["BinaryHashGrid"]:
        return [self]

    def binarised(self) -> BinarisedTables:
        return BinarisedTables((self.binary_params(),))

    def corner_indices(self, corner_coords: Tensor) -> Tensor:
        """Integer lattice coordinates [..., L, C, d] (int64, >= 0) -> flat table rows [..., L, C] (level
        offsets added), written out per corner in int64 as the docstring states it (for tests)."""
        def per_level(t: Tensor) -> Tensor:
            return t.view(-1, 1)

        res = per_level(self._res)
        dense = torch.zeros(corner_coords.shape[:-1], dtype=torch.long, device=corner_coords.device)
        hashed = torch.zeros_like(dense)
        stride = torch.ones_like(res)
        for axis in range(self.dims):
            c = corner_coords[..., axis]
            dense = dense + c * stride
            stride = stride * res
            hashed = hashed ^ ((c * PRIMES[axis]) & UINT32_MASK)
        index = torch.where(per_level(self._dense), dense, hashed) % per_level(self._sizes)
        return index + per_level(self._offsets.long())

    def lookup(self, x_normalised: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The reference's interpolation set-up for points [N, d]: table rows [N, L, 2^d] (int32, level
        offsets added), renormalised weights [N, L, 2^d] and the inside-the-box mask [N].

        Work is laid out [L, ..., N] (long contiguous runs for the CPU) and per axis ([L, d, 2, N]: the low
        and the high corner), combined into the 2^d corners only at the end, in int32: a dense row is
        < R^d <= its level's table size, a hashed row is (XOR_i c_i * prime_i) & (size - 1) with size a
        power of two < 2^31, and the products c_i * prime_i are taken in int64 (exact; their low 32 bits
        are the uint32 products'). Same numbers, bit for bit, as multiplying out [N, L, 2^d, d] corners."""
        res = self._res.to(x_normalised.dtype)[:, None, None]  # [L,1,1]
        r_max = (self._res - 1)[:, None, None]
        inside = ((x_normalised >= 0) & (x_normalised <= 1)).all(dim=-1)  # [N]
        pos = x_normalised.t()[None] * (res - 2) + 0.5  # [L,d,N]
        base = torch.floor(pos)
        frac = pos - base
        # Points inside the box have 0 <= floor(pos) <= R - 2; the clamp only keeps the integer conversion
        # of far-away (or infinite) points defined. Their output is zero.
        low = torch.minimum(base.clamp(min=-1), res - 1).long()
        corner = torch.stack((low, torch.minimum(low + 1, r_max)), dim=2)  # [L,d,2,N]
        on_border = (corner == 0) | (corner == r_max[..., None])
        term = (corner.clamp(min=0) * self._axis_mult[:, :, None, None]) & self._hash_mask[:, None, None, None]
        term = term.int()
        weight = _corner_combine(torch.stack((1 - frac, frac), dim=2), torch.mul)  # [L,2^d,N]
        excluded = _corner_combine(on_border, torch.logical_or)
        # Renormalised in the [N, L, 2^d] layout, with the same reduction as ever over the contiguous corners
        # (torch's summation order depends on the layout, the dtype and the CPU's vector width).
        weight = weight.permute(2, 0, 1).contiguous() * ~excluded.permute(2, 0, 1)
        total = weight.sum(dim=-1, keepdim=True)
        weight = weight / torch.where(total > 0, total, torch.full_like(total, 1e-9))
        if self._any_dense and self._any_hashed:
            rows = torch.where(self._dense[:, None, None], _corner_combine(term, torch.add),
                               _corner_combine(term, torch.bitwise_xor))
        else:
            rows = _corner_combine(term, torch.add if self._any_dense else torch.bitwise_xor)
        rows = rows + self._offsets[:, None, None]
        return rows.permute(2, 0, 1).contiguous(), weight, inside

    def reference_forward(self, x_normalised: Tensor, table: Tensor) -> Tensor:
        """The PyTorch lookup of points [N, d] in a (binarised) table -> [N, L * features_per_level]."""
        n = x_normalised.shape[0]
        rows, weight, inside = self.lookup(x_normalised)
        feats = _GatherRows.apply(table, rows.reshape(-1))
        feats = feats.reshape(n, self.num_levels, 1 << self.dims, self.features_per_level)
        out = (weight[..., None] * feats).sum(dim=2)  # [N,L,F]
        out = out * inside[:, None, None].to(out.dtype)
        return out.reshape(n, self.output_dim)

    def forward(self, x_normalised: Tensor, table: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        """Points in [0,1]^d, [N,d] -> features [N, L * features_per_level]. ``table``: this grid's
        binarised table (or ``binarised()``'s result), to binarise once per step; default: binarise now."""
        if table is None:
            table = self.binary_params()
        elif not isinstance(table, Tensor):
            (table,) = table
        (table,) = _lookup_tables(x_normalised, (table,))
        if use_fused(x_normalised, (table,)):
            return _fused().encode(x_normalised, [(self, tuple(range(self.dims)))], [table])
        if use_compiled(x_normalised, (table,)):
            return hashgrid_compiled.encode(x_normalised, [(self, tuple(range(self.dims)))], [table])
        return self.reference_forward(x_normalised, table)


class GridPlaneEncoding(nn.Module):
    """HAC's ``mix_3D2D_encoding``: a 3D grid plus xy, xz, yz planes, concatenated.

    Defaults give HAC's context and Predict-GS's SFP: 12 levels at 2^13 for the grid, 4 levels at 2^15
    for each plane, 4 features per entry, so 12*4 + 3*4*4 = 96 output features."""

    PLANE_AXES = ((0, 1), (0, 2), (1, 2))
    _PLANE_COLUMNS = (slice(0, 2), slice(0, 3, 2), slice(1, 3))  # the same, as views (no index tensor)

    def __init__(
        self,
        grid_resolutions: Sequence[int] = HAC_GRID_RESOLUTIONS,
        plane_resolutions: Sequence[int] = HAC_PLANE_RESOLUTIONS,
        log2_grid: int = 13,
        log2_plane: int = 15,
        features_per_level: int = 4,
    ):
        super().__init__()
        self.grid = BinaryHashGrid(3, grid_resolutions, log2_grid, features_per_level)
        self.planes = nn.ModuleList(
            BinaryHashGrid(2, plane_resolutions, log2_plane, features_per_level) for _ in self.PLANE_AXES
        )

    @property
    def output_dim(self) -> int:
        return self.grid.output_dim + sum(p.output_dim for p in self.planes)

    def tables(self) -> list[BinaryHashGrid]:
        return [self.grid, *self.planes]

    def num_binary_params(self) -> int:
        return sum(t.params.numel() for t in self.tables())

    def binarised(self) -> BinarisedTables:
        """The binarised tables, in ``tables()`` order: pass them to ``forward`` and use ``.flat()`` for
        the rate term to binarise once per step."""
        return BinarisedTables(t.binary_params() for t in self.tables())

    def sign_tables(self) -> BinarisedTables:
        """``binarised()``'s values as int8, without gradient (see the module docstring)."""
        return BinarisedTables(t.sign_table() for t in self.tables())

    def binary_params(self) -> Tensor:
        """All binarised entries, flattened (for bit costs and coding)."""
        return self.binarised().flat()

    def forward(self, x_normalised: Tensor, tables: Sequence[Tensor] | None = None) -> Tensor:
        """Points [N, 3] in [0,1]^3 -> [N, output_dim]. ``tables``: ``binarised()``'s result, to binarise
        once per step; default: binarise now."""
        if tables is None:
            tables = self.binarised()
        if len(tables) != len(self.PLANE_AXES) + 1:
            raise ValueError(f"expected {len(self.PLANE_AXES) + 1} binarised tables, got {len(tables)}")
        tables = _lookup_tables(x_normalised, tables)
        grids = [(self.grid, (0, 1, 2))] + list(zip(self.planes, self.PLANE_AXES))
        if use_fused(x_normalised, tables):
            return _fused().encode(x_normalised, grids, list(tables))
        if use_compiled(x_normalised, tables):
            return hashgrid_compiled.encode(x_normalised, grids, list(tables))
        parts = [self.grid.reference_forward(x_normalised, tables[0])]
        for columns, plane, table in zip(self._PLANE_COLUMNS, self.planes, tables[1:]):
            parts.append(plane.reference_forward(x_normalised[:, columns], table))
        return torch.cat(parts, dim=-1)
