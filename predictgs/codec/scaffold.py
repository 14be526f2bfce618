"""Scaffold-GS's streams: no entropy model, so its float32 tensors are stored losslessly (positions,
features, log scaling, offsets of every anchor, and the MLPs), each deflated where that helps. The
decoded model is the trained one, bit for bit."""

from __future__ import annotations

import torch

from .container import ByteReader
from .layout import mlp_tensors
from .tensors import decode_floats, encode_floats


@torch.no_grad()
def encode_scaffold(model, half_mlps: bool = False) -> tuple[dict, dict]:
    a = model.anchors
    sections = {
        "anchor": encode_floats([a.positions]),
        "feat": encode_floats([a.attributes]),
        "scaling": encode_floats([a.scaling]),
        "offsets": encode_floats([a.offsets]),
        "mlps": encode_floats([t for _, t in mlp_tensors(model)], half=half_mlps),
    }
    return {"num_anchors": a.num_anchors}, sections


def decode_scaffold_positions(sections: dict[str, bytes], num_anchors: int) -> torch.Tensor:
    """The positions [N, 3], decoded first: their byte count vouches for the header's anchor count."""
    reader = ByteReader(sections["anchor"], "section 'anchor'")
    return decode_floats(reader, [(num_anchors, 3)])[0]


@torch.no_grad()
def decode_scaffold(model, sections: dict[str, bytes], positions: torch.Tensor):
    a = model.anchors
    a.positions.copy_(positions)
    targets = {"feat": [a.attributes], "scaling": [a.scaling], "offsets": [a.offsets],
               "mlps": [t for _, t in mlp_tensors(model)]}
    for name, tensors in targets.items():
        reader = ByteReader(sections[name], f"section {name!r}")
        for target, value in zip(tensors, decode_floats(reader, [tuple(t.shape) for t in tensors])):
            target.data.copy_(value)
    return model
