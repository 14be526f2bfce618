"""HAC's and Predict-GS's streams: kept anchors, their offset masks, the binarised hash tables, and the
attributes (features f or residuals f_r), activated scaling and raw offsets, arithmetic-coded under the
context model's discretised Gaussians; the MLPs in fp32.

Reproducible distributions. The decoder recomputes mean, scale and step Q of every anchor from the
decoded positions and hash tables, and must get exactly the encoder's numbers: Q turns symbols back into
values, and all three shape the CDFs. Both sides therefore
- evaluate the context on the same fixed chunks of anchors (``chunk_anchors`` rows, in file order):
  matrix products can round differently with the batch shape;
- evaluate it in float64 and round the results to float32: what differs between machines, thread
  counts or vectorised and scalar code paths is a last-bit difference of the float64 result, which
  survives the rounding to float32 only with probability ~2^-29 per value.
The values the encoder stores, ``round(clamp(x) / Q) Q`` with those float32 Q, are what the decoded
model renders (HAC's decoded mode).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from ..entropy import SCALE_FLOOR, clamp_around
from ..errors import BitstreamError
from ..model.anchors import AnchorBounds
from ..model.context import GROUPS
from .arithmetic import coder_floor_bits, decode_bernoulli, decode_gaussian, encode_bernoulli, encode_gaussian
from .container import ByteReader, ByteWriter
from .decoded import DecodedAnchors
from .layout import (
    MAX_CHUNK_ANCHORS,
    attribute_section,
    box_json,
    has_sfp,
    hash_tables,
    header_box,
    header_field,
    mlp_tensors,
)
from .positions import decode_positions, encode_positions, morton_order
from .tensors import decode_floats, encode_floats

DEFAULT_CHUNK_ANCHORS = 3000  # HAC's batch size; see benchmarks/bench_codec.py for the timings
MASKED_OFF_LOGIT = -10.0  # raw mask of a decoded masked-off offset: sigmoid(-10) < HAC's 0.01 threshold
MASKED_ON_LOGIT = 10.0


@dataclass
class Distribution:
    """float32 mean, scale (floored) and step of one group for the anchors of a chunk, flattened to one
    value per coded element."""

    mean: Tensor
    scale: Tensor
    step: Tensor

    def select(self, keep: Tensor) -> "Distribution":
        return Distribution(self.mean[keep], self.scale[keep], self.step[keep])


def anchors_device(model) -> torch.device:
    return model.anchors.positions.device


def float64_context(model):
    return copy.deepcopy(model.context).to(device="cpu", dtype=torch.float64).eval()


@torch.no_grad()
def chunk_distributions(context64, bounds: AnchorBounds, positions: Tensor) -> dict[str, Distribution]:
    """Per group, the distribution of each element of the anchors ``positions`` (one chunk)."""
    dist = context64(bounds.normalise(positions).double())
    out = {}
    for group in GROUPS:
        mean = dist.mean[group].float()
        scale = dist.scale[group].float().clamp(min=SCALE_FLOOR)
        step = dist.step[group].float().expand_as(mean)
        out[group] = Distribution(mean.reshape(-1), scale.reshape(-1), step.reshape(-1))
    return out


def group_section(model, group: str) -> str:
    """The section holding a coded group: "feat" or "residual" for the attributes, else the group's name."""
    return attribute_section(model) if group == "attributes" else group


def offset_element_mask(masks: Tensor) -> Tensor:
    """[n, K, 1] bool -> [n * 3K] bool: which flattened offset values are coded."""
    return masks.expand(-1, -1, 3).reshape(-1)


def _chunks(count: int, size: int):
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


# -- encoding ----------------------------------------------------------------------------------------
@torch.no_grad()
def encode_entropy_model(model, chunk_anchors: int = DEFAULT_CHUNK_ANCHORS,
                         half_mlps: bool = False) -> tuple[dict, dict, dict]:
    """-> (header fields, sections, quantised values in file order [the decoder's expected output]).
    Coding runs on the CPU (torchac is CPU-only; the decoder's numbers must be reproducible)."""
    if anchors_device(model).type != "cpu":
        model = copy.deepcopy(model).cpu()
    anchors, bounds = model.anchors, model.bounds
    kept = model.kept_anchors()
    codes = bounds.to_codes(anchors.positions[kept])
    order = morton_order(codes)
    rows, codes = kept[order], codes[order]
    positions = bounds.from_codes(codes)  # == model.anchor_positions()[rows]
    masks = anchors.mask_hard(model.config.mask_threshold)[rows].detach() > 0  # [N, K, 1]
    values = {g: v.detach() for g, v in model.coded_values(rows).items()}
    centres = model.parameter_centres()
    context64 = float64_context(model)

    writers = {g: ByteWriter() for g in GROUPS}
    quantised = {g: torch.zeros_like(v) for g, v in values.items()}
    floor_bits = {g: 0.0 for g in GROUPS}
    for chunk in _chunks(rows.shape[0], chunk_anchors):
        dists = chunk_distributions(context64, bounds, positions[chunk])
        for group in GROUPS:
            step = dists[group].step.reshape(values[group][chunk].shape)
            # HAC's test-time quantisation (quantise_groups, "round"), operation for operation.
            clamped = clamp_around(values[group][chunk], step, centres[group])
            symbols = torch.round(clamped / step)
            quantised[group][chunk] = symbols * step
            flat, dist = symbols.reshape(-1), dists[group]
            if group == "offsets":
                keep = offset_element_mask(masks[chunk])
                flat, dist = flat[keep], dist.select(keep)
            if not torch.isfinite(flat).all() or (flat.abs() >= 2**31).any():
                raise BitstreamError(f"cannot encode: {group} has non-finite or out-of-range quantised values "
                                     "(a zero quantisation step?)")
            encode_gaussian(writers[group], flat.to(torch.int64), dist.mean, dist.scale, dist.step)
            floor_bits[group] += coder_floor_bits(flat, dist.mean, dist.scale, dist.step)
    # Masked-off offsets are not coded; the decoder gives them +0.0.
    coded = offset_element_mask(masks).reshape(quantised["offsets"].shape)
    quantised["offsets"] = torch.where(coded, quantised["offsets"], torch.zeros(()))

    sections = {
        "anchor": encode_positions(codes),
        "masks": encode_bernoulli(masks.reshape(-1)),
        "hash": encode_bernoulli((model.context.encoding.binary_params() > 0)),
    }
    if has_sfp(model):
        sections["sfp"] = encode_bernoulli(model.sfp.encoding.binary_params() > 0)
    for group in GROUPS:
        sections[group_section(model, group)] = writers[group].getvalue()
    sections["mlps"] = encode_floats([t for _, t in mlp_tensors(model)], half=half_mlps)

    header = {"num_anchors": int(rows.shape[0]), "chunk_anchors": int(chunk_anchors), "bounds": box_json(bounds)}
    if has_sfp(model):
        header["sfp_bounds"] = box_json(model.sfp_bounds)
    k = model.config.n_offsets
    decoded = DecodedAnchors(quantised["attributes"], quantised["scaling"],
                             quantised["offsets"].reshape(-1, k, 3), masks.float())
    floor_bits = {group_section(model, g): b for g, b in floor_bits.items()}
    return header, sections, {"positions": positions, "decoded": decoded, "rows": rows,
                              "coder_floor_bits": floor_bits}


# -- decoding ----------------------------------------------------------------------------------------
def _write_binary_tables(reader: ByteReader, encoding) -> None:
    tables = hash_tables(encoding)
    bits = decode_bernoulli(reader, sum(t.numel() for t in tables))
    start = 0
    for table in tables:
        n = table.numel()
        table.data.copy_((bits[start:start + n].float() * 2 - 1).reshape(table.shape))
        start += n
    reader.expect_end()


def decode_anchor_codes(sections: dict[str, bytes], num_anchors: int) -> Tensor:
    """The 16-bit codes [N, 3] of the anchors (decoded first: their count vouches for the header's)."""
    return decode_positions(_reader(sections, "anchor"), num_anchors)


@torch.no_grad()
def decode_entropy_model(model, header: dict, sections: dict[str, bytes], codes: Tensor):
    """Fill ``model`` (fresh, ``num_anchors`` rows) from the sections; returns it in decoded mode."""
    n = codes.shape[0]
    chunk_anchors = header_field(header, "chunk_anchors", int, lambda v: 0 < v <= MAX_CHUNK_ANCHORS)
    k = model.config.n_offsets
    model.bounds = AnchorBounds(*header_box(header, "bounds"))
    if has_sfp(model):
        model.sfp_bounds = AnchorBounds(*header_box(header, "sfp_bounds"))

    positions = model.bounds.from_codes(codes)
    reader = _reader(sections, "masks")
    masks = decode_bernoulli(reader, n * k).reshape(n, k, 1)
    reader.expect_end()
    _write_binary_tables(_reader(sections, "hash"), model.context.encoding)
    if has_sfp(model):
        _write_binary_tables(_reader(sections, "sfp"), model.sfp.encoding)
    reader = _reader(sections, "mlps")
    named = mlp_tensors(model)
    for (name, target), value in zip(named, decode_floats(reader, [tuple(t.shape) for _, t in named])):
        target.copy_(value)  # state_dict() tensors share storage with the parameters

    context64 = float64_context(model)
    dims = model.context.dims
    decoded = {g: torch.zeros(n, dims[g]) for g in GROUPS}
    readers = {g: _reader(sections, group_section(model, g)) for g in GROUPS}
    for chunk in _chunks(n, chunk_anchors):
        dists = chunk_distributions(context64, model.bounds, positions[chunk])
        for group in GROUPS:
            dist = dists[group]
            keep = offset_element_mask(masks[chunk]) if group == "offsets" else None
            if keep is not None:
                dist = dist.select(keep)
            symbols = decode_gaussian(readers[group], dist.mean, dist.scale, dist.step)
            values = symbols.to(torch.float32) * dist.step
            rows = chunk.stop - chunk.start
            if keep is None:
                decoded[group][chunk] = values.reshape(rows, dims[group])
            else:
                full = torch.zeros(keep.shape[0])
                full[keep] = values
                decoded[group][chunk] = full.reshape(rows, dims[group])
    for reader in readers.values():
        reader.expect_end()

    values = DecodedAnchors(decoded["attributes"], decoded["scaling"], decoded["offsets"].reshape(n, k, 3),
                            masks.float())
    a = model.anchors
    a.positions.copy_(positions)
    # The raw parameters get the decoded values too (they are not used in decoded mode; they keep the
    # model meaningful if ``decoded`` is dropped): scaling back in log space, masks as saturated logits.
    a.attributes.data.copy_(values.attributes)
    a.offsets.data.copy_(values.offsets)
    a.scaling.data.copy_(torch.log(values.scaling.clamp_min(1e-30)))
    a.masks.data.copy_(torch.where(masks, MASKED_ON_LOGIT, MASKED_OFF_LOGIT))
    model.decoded = values
    return model


def _reader(sections: dict[str, bytes], name: str) -> ByteReader:
    return ByteReader(sections[name], f"section {name!r}")
