"""HAC's context entropy model of the per-anchor attributes, as one object (CompressAI's pattern): the
rate a method trains with, the estimate in metrics.json and the bytes in the bitstream all come from it.

A binarised hash grid + planes is queried at the (quantised, normalised) anchor position and decoded by
``mlp_grid`` into a mean and a scale per coded value and one quantisation-step adjustment per group:

    Q = Q0 (1 + tanh(adj)),  p(x) = Phi((x + Q/2 - mu)/sigma) - Phi((x - Q/2 - mu)/sigma)

Groups (HAC §2.2 of the reference notes; the name of the first is the method's: "feat" for HAC's
feature f, "residual" for Predict-GS's f_r):
  attributes  raw values,                                      Q0 = 1
  scaling     the activated (exp) 6-d scaling,                 Q0 = 0.001
  offsets     the raw K x 3 offsets (before the scaling),      Q0 = 0.2

Two evaluations of the same network:
- :meth:`distributions` — on the model's device and dtype, differentiable: training.
- the coding path (:meth:`quantised`, :meth:`bits`, :meth:`compress`, :meth:`decompress`) — the
  network in float64 (on the CPU, or the device of :func:`coding_device`), on fixed chunks of ``chunk_anchors`` anchors in file order, rounded to
  float32. Encoder, decoder and the test-time model get exactly the same mean, scale and step: matrix
  products can round differently with the batch shape, and a last-bit float64 difference survives the
  rounding to float32 with probability ~2^-29 per value. So the test-time model renders exactly what
  the file decodes to.

Test-time values are HAC's: clamped to centre +- 15000 Q (centre = the mean of the parameter over all
anchors), then round(x / Q) Q.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..codec.arithmetic import CodeLength, decode_gaussian, encode_gaussian, gaussian_code_bits
from ..codec.container import ByteReader, ByteWriter
from ..config import bounded, positive
from ..errors import BitstreamError
from ..nn.hashgrid import BinarisedTables, GridPlaneEncoding
from .functional import SCALE_FLOOR, adaptive_step, clamp_around, gaussian_likelihood, hash_table_bits, quantize

_CODING_DEVICE: torch.device | None = None  # where the coding network runs (None: the CPU)


@contextlib.contextmanager
def coding_device(device: str | torch.device | None):
    """Evaluate the coding networks (float64) on ``device`` inside the block (the coder stays on the
    CPU): ``predictgs decode --device cuda`` decodes with the context on the GPU."""
    global _CODING_DEVICE
    previous = _CODING_DEVICE
    _CODING_DEVICE = None if device is None else torch.device(device)
    try:
        yield
    finally:
        _CODING_DEVICE = previous


DEFAULT_CHUNK_ANCHORS = 3000  # HAC's batch size; see benchmarks/bench_codec.py for the timings
MAX_CHUNK_ANCHORS = 1 << 16  # the decoder refuses more (bounds its memory per chunk)


@dataclass
class ContextConfig:
    log2_grid: int = field(default=13, metadata=bounded(1, 24))
    log2_plane: int = field(default=15, metadata=bounded(1, 24))
    features_per_level: int = field(default=4, metadata=bounded(1, 64))
    hidden_dim: int = field(default=100, metadata=bounded(1, 4096))  # HAC: 2 x feat_dim (50)
    q0_attributes: float = field(default=1.0, metadata=positive())
    q0_scaling: float = field(default=0.001, metadata=positive())
    q0_offsets: float = field(default=0.2, metadata=positive())


@dataclass
class Distributions:
    """Per group: mean and scale [n, dim], step [n, 1]; ``logits``: extra outputs of subclasses
    (HAC++'s mixture logits)."""

    mean: dict[str, Tensor]
    scale: dict[str, Tensor]
    step: dict[str, Tensor]
    logits: Tensor | None = None


@dataclass
class CodingDistribution:
    """One group of one chunk, flattened to one float32 value per coded element (scale floored)."""

    mean: Tensor
    scale: Tensor
    step: Tensor

    def select(self, rows: Tensor) -> "CodingDistribution":
        """The elements of indices ``rows`` (callers turn a mask into indices once, for every array)."""
        return CodingDistribution(self.mean.index_select(0, rows), self.scale.index_select(0, rows),
                                  self.step.index_select(0, rows))


def chunks(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


class AnchorEntropyModel(nn.Module):
    """The hash-grid context model of HAC; ``groups`` maps each coded group to its dimension."""

    def __init__(self, groups: Mapping[str, int], base_steps: Mapping[str, float], config: ContextConfig):
        super().__init__()
        if list(groups) != list(base_steps):
            raise ValueError("groups and base steps must name the same groups in the same order")
        self.config = config
        self.groups = dict(groups)
        self.base_steps = dict(base_steps)
        self.chunk_anchors = DEFAULT_CHUNK_ANCHORS
        self.encoding = GridPlaneEncoding(log2_grid=config.log2_grid, log2_plane=config.log2_plane,
                                          features_per_level=config.features_per_level)
        out_dim = 2 * sum(self.groups.values()) + len(self.groups)
        self.mlp_grid = nn.Sequential(nn.Linear(self.encoding.output_dim, config.hidden_dim), nn.ReLU(True),
                                      nn.Linear(config.hidden_dim, out_dim))

    @property
    def values_per_anchor(self) -> int:
        return sum(self.groups.values())

    @property
    def gaussian_groups(self) -> list[str]:
        """The groups coded here as single discretised Gaussians (subclasses code the others)."""
        return list(self.groups)

    # -- training ------------------------------------------------------------------------------------
    def distributions(self, normalised_positions: Tensor, tables=None) -> Distributions:
        """``tables``: the step's ``encoding.binarised()`` (binarise once per step), default: now."""
        return self.split_distributions(self.mlp_grid(self.encoding(normalised_positions, tables)))

    def split_distributions(self, out: Tensor, **extra) -> Distributions:
        """The context MLP's output -> per group mean, scale and adaptive step (the layout: means and
        scales interleaved per group, then one step refinement per group)."""
        sizes = [dim for dim in self.groups.values() for _ in (0, 1)] + [1] * len(self.groups)
        parts = torch.split(out, sizes, dim=-1)
        mean, scale, step = {}, {}, {}
        for i, group in enumerate(self.groups):
            mean[group], scale[group] = parts[2 * i], parts[2 * i + 1]
            step[group] = adaptive_step(self.base_steps[group], parts[2 * len(self.groups) + i])
        return Distributions(mean, scale, step, **extra)

    def add_noise(self, values: dict[str, Tensor], steps: Mapping[str, Tensor | float] | None = None):
        """values + U(-Q/2, Q/2) Q per group; ``steps`` None: the base steps Q0 (HAC's noise phase)."""
        steps = self.base_steps if steps is None else steps
        return {group: quantize(x, steps[group], "noise") for group, x in values.items()}

    def forward(self, values: dict[str, Tensor], dist: Distributions, centres: Mapping[str, Tensor]):
        """-> (quantised values, likelihoods per element). In training the values get uniform noise of
        the adaptive step (and are rendered so); otherwise they are clamped and rounded. Likelihoods
        have HAC's 1e-6 floor and gradient rule (the rate the model trains with)."""
        hat = self.quantise(values, dist, centres)
        return hat, self.likelihoods(hat, dist, centres)

    def quantise(self, values: dict[str, Tensor], dist: Distributions, centres: Mapping[str, Tensor]):
        """The values with uniform noise of the adaptive step (training), else clamped and rounded."""
        if self.training:
            return self.add_noise(values, dist.step)
        return {g: quantize(clamp_around(x, dist.step[g], centres[g]), dist.step[g], "round")
                for g, x in values.items()}

    def likelihoods(self, hat: dict[str, Tensor], dist: Distributions, centres: Mapping[str, Tensor],
                    rows: Tensor | None = None) -> dict[str, Tensor]:
        """Per-element likelihoods of quantised values under ``dist`` (HAC's range clamp first); ``rows``:
        of those anchors only (a rate measured on a sample)."""
        likelihoods = {}
        for group, x in hat.items():
            mean, scale, step = dist.mean[group], dist.scale[group], dist.step[group]
            if rows is not None:
                x, mean, scale, step = (t.index_select(0, rows) for t in (x, mean, scale, step))
            step = step.expand_as(x)
            x = clamp_around(x, step, centres[group])
            likelihoods[group] = gaussian_likelihood(x, mean, scale, step)
        return likelihoods

    def table_bits(self, tables=None) -> Tensor:
        """Bits of the binarised hash tables under one global Bernoulli (HAC's get_binary_vxl_size)."""
        return hash_table_bits(self.encoding, tables)

    # -- coding --------------------------------------------------------------------------------------
    def _coding_network(self) -> "AnchorEntropyModel":
        """The float64 copy of the model the coder evaluates, without the hash tables' raw parameters (it reads
        :meth:`_coding_tables`): copying and widening megabytes of them was most of its cost."""
        memo = {id(table.params): nn.Parameter(table.params.new_empty((0,) + table.params.shape[1:]),
                                               requires_grad=False)
                for table in self.encoding.tables()}
        return copy.deepcopy(self, memo).to(device=_CODING_DEVICE or "cpu", dtype=torch.float64).eval()

    def _coding_tables(self):
        """The binarised tables, as int8 signs (the same values; see predictgs/nn/hashgrid.py)."""
        return BinarisedTables(t.to(_CODING_DEVICE or "cpu") for t in self.encoding.sign_tables())

    @torch.no_grad()
    def _raw_chunks(self, normalised_positions: Tensor):
        """Chunks of anchors (file order): (rows, every group's coding distributions, the float64
        distributions and the float64 network, which subclasses need for their own groups)."""
        network = self._coding_network()
        tables = self._coding_tables()  # once, not once per chunk
        device = network.mlp_grid[0].weight.device
        positions = normalised_positions.detach().to(device)
        for rows in chunks(positions.shape[0], self.chunk_anchors):
            dist = network.distributions(positions[rows].double(), tables)
            out = {}
            for group in self.groups:
                mean = dist.mean[group].float().cpu()
                scale = dist.scale[group].float().clamp(min=SCALE_FLOOR).cpu()
                step = dist.step[group].float().cpu().expand_as(mean)
                out[group] = CodingDistribution(mean.reshape(-1), scale.reshape(-1), step.reshape(-1))
            yield rows, out, dist, network

    def _coding_chunks(self, normalised_positions: Tensor) -> Iterator[tuple[slice, dict[str, CodingDistribution]]]:
        """Chunks of anchors (file order) with every group's coding distributions."""
        for rows, out, _, _ in self._raw_chunks(normalised_positions):
            yield rows, out

    @staticmethod
    def _symbols(x: Tensor, dist: CodingDistribution, centre: Tensor, shape) -> Tensor:
        """HAC's test-time quantisation, as float symbols round(clamp(x) / Q) of shape ``shape``."""
        step = dist.step.reshape(shape)
        return torch.round(clamp_around(x, step, centre) / step)

    def _passes(self, values, normalised_positions, centres):
        """Per chunk: (rows, distributions, symbols per group, the float64 distributions and network)
        of the values (on the CPU)."""
        values = {g: v.detach().cpu().float() for g, v in values.items()}
        centres = {g: torch.as_tensor(c).detach().cpu().float() for g, c in centres.items()}
        for rows, dists, dist64, network in self._raw_chunks(normalised_positions):
            symbols = {g: self._symbols(values[g][rows], dists[g], centres[g], values[g][rows].shape)
                       for g in self.groups}
            yield rows, dists, symbols, (dist64, network)

    # Hooks for the groups a subclass codes itself (HAC++'s mixture), called once per chunk of the same
    # pass, so that the context is evaluated once: ``extra`` is (float64 distributions, float64 network).
    def _chunk_code_lengths(self, rows, dists, symbols, extra) -> dict[str, CodeLength]:
        return {}

    def _chunk_compress(self, writers, rows, dists, symbols, extra) -> None:
        pass

    def _chunk_decompress(self, streams, rows, dists, extra, out) -> None:
        pass

    @torch.no_grad()
    def quantised(self, values: dict[str, Tensor], normalised_positions: Tensor,
                  centres: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The test-time values round(clamp(x) / Q) Q, exactly as the bitstream stores them (CPU)."""
        out = {g: torch.zeros(v.shape, dtype=torch.float32) for g, v in values.items()}
        for rows, dists, symbols, _ in self._passes(values, normalised_positions, centres):
            for g in self.groups:
                out[g][rows] = symbols[g] * dists[g].step.reshape(symbols[g].shape)
        return out

    @staticmethod
    def _coded_elements(symbols: Tensor, dist: CodingDistribution, mask: Tensor | None):
        flat = symbols.reshape(-1)
        if mask is not None:
            keep = mask.reshape(-1).nonzero().squeeze(1)
            flat, dist = flat.index_select(0, keep), dist.select(keep)
        return flat, dist

    @torch.no_grad()
    def code_lengths(self, values: dict[str, Tensor], normalised_positions: Tensor,
                     centres: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None) -> dict[str, CodeLength]:
        """What :meth:`compress` writes for each group, without coding: the ideal code length of the
        test-time values under exactly the coder's probabilities (``bits``) and the coder's known
        overhead (block headers, termination). ``masks`` (per group, bool like the values) leaves out
        elements that are not coded (HAC's masked offsets)."""
        masks = masks or {}
        total = {g: CodeLength(0.0, 0.0) for g in self.groups}
        for rows, dists, symbols, extra in self._passes(values, normalised_positions, centres):
            for g in self.gaussian_groups:
                mask = masks[g][rows].cpu() if g in masks else None
                flat, dist = self._coded_elements(symbols[g], dists[g], mask)
                total[g] = total[g] + gaussian_code_bits(flat.to(torch.int64), dist.mean, dist.scale, dist.step)
            for g, length in self._chunk_code_lengths(rows, dists, symbols, extra).items():
                total[g] = total[g] + length
        return total

    def bits(self, values: dict[str, Tensor], normalised_positions: Tensor, centres: Mapping[str, Tensor],
             masks: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        """Bits of each group's stream as the coder spends them, its overhead included (the estimate in
        metrics.json; equal to the section sizes to within the coder's rounding)."""
        lengths = self.code_lengths(values, normalised_positions, centres, masks)
        return {g: 8 * length.total_bytes for g, length in lengths.items()}

    @torch.no_grad()
    def compress(self, values: dict[str, Tensor], normalised_positions: Tensor, centres: Mapping[str, Tensor],
                 masks: Mapping[str, Tensor] | None = None) -> tuple[dict[str, bytes], dict[str, Tensor]]:
        """-> (one stream per group, the quantised values the decoder will return; masked elements 0)."""
        masks = masks or {}
        writers = {g: ByteWriter() for g in self.groups}
        out = {g: torch.zeros(v.shape, dtype=torch.float32) for g, v in values.items()}
        for rows, dists, symbols, extra in self._passes(values, normalised_positions, centres):
            for g in self.groups:
                mask = masks[g][rows].cpu() if g in masks else None
                flat, dist = self._coded_elements(symbols[g], dists[g], mask)
                if not torch.isfinite(flat).all() or (flat.abs() >= 2**31).any():
                    raise BitstreamError(f"cannot encode: {g} has non-finite or out-of-range quantised values "
                                         "(a zero quantisation step?)")
                if g in self.gaussian_groups:
                    encode_gaussian(writers[g], flat.to(torch.int64), dist.mean, dist.scale, dist.step)
                quantised = symbols[g] * dists[g].step.reshape(symbols[g].shape)
                out[g][rows] = quantised if mask is None else torch.where(mask, quantised, torch.zeros(()))
            self._chunk_compress(writers, rows, dists, symbols, extra)
        return {g: w.getvalue() for g, w in writers.items()}, out

    @torch.no_grad()
    def decompress(self, streams: Mapping[str, ByteReader], normalised_positions: Tensor,
                   masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The values [n, dim] per group of the streams written by :meth:`compress` (masked elements 0;
        groups a subclass codes itself are left at 0 for it to fill)."""
        masks = masks or {}
        n = normalised_positions.shape[0]
        out = {g: torch.zeros(n, dim) for g, dim in self.groups.items()}
        for rows, dists, dist64, network in self._raw_chunks(normalised_positions):
            for g in self.gaussian_groups:
                dim = self.groups[g]
                dist = dists[g]
                mask = masks[g][rows].reshape(-1).nonzero().squeeze(1) if g in masks else None
                if mask is not None:
                    dist = dist.select(mask)
                values = decode_gaussian(streams[g], dist.mean, dist.scale, dist.step).to(torch.float32) * dist.step
                count = rows.stop - rows.start
                if mask is None:
                    out[g][rows] = values.reshape(count, dim)
                else:
                    full = torch.zeros(count * dim)
                    full.index_copy_(0, mask, values)
                    out[g][rows] = full.reshape(count, dim)
            self._chunk_decompress(streams, rows, dists, (dist64, network), out)
        for g in self.groups:
            streams[g].expect_end()
        return out
