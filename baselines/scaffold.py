"""Scaffold-GS (Lu et al., CVPR 2024): anchors with learnable features whose K neural Gaussians are
decoded by three MLPs. No entropy model: the size is that of the float32 parameters, and the bitstream
stores them losslessly (positions, features, log scaling, offsets, MLPs), each deflated where that helps."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from predictgs.codec import CodedState, section_reader
from predictgs.codec.tensors import decode_floats, encode_floats
from predictgs.config import bounded
from predictgs.methods.base import BITS_PER_FLOAT, AnchorConfig, AnchorMethod
from predictgs.methods.registry import register_method

SECTIONS = ("anchor", "feat", "scaling", "offsets", "mlps")


def scaffold_ply_header(num: int, n_offsets: int, feat_dim: int) -> bytes:
    """The ASCII header of Scaffold-GS's point_cloud.ply (plyfile, one float vertex element, the
    properties of its construct_list_of_attributes in order)."""
    names = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_offset_{i}" for i in range(3 * n_offsets)]
             + [f"f_anchor_feat_{i}" for i in range(feat_dim)] + ["opacity"] + [f"scale_{i}" for i in range(6)]
             + [f"rot_{i}" for i in range(4)])
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {num}"]
    lines += [f"property float {name}" for name in names] + ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


@dataclass
class ScaffoldConfig(AnchorConfig):
    feat_dim: int = field(default=32, metadata=bounded(1, 4096))
    use_distance: bool = False


@register_method
class ScaffoldGS(AnchorMethod):
    name = "scaffold"
    label = "Scaffold-GS"
    config_class = ScaffoldConfig

    def training_gaussians(self, view, step):
        positions = self.anchors.positions
        visible = self.visible_anchors(view, positions)
        a = self.anchors
        rows = {"positions": positions[visible], "attributes": a.attributes[visible], "offsets": a.offsets[visible],
                "scaling": a.scaling_activated()[visible]}
        neural = self.render_anchors(view, visible, rows, residual=False)
        return neural, self.loss_terms(neural)

    @torch.no_grad()
    def test_state(self):
        a = self.anchors
        return {"positions": a.positions.clone(), "attributes": a.attributes.detach().clone(),
                "scaling": a.scaling_activated().detach(), "offsets": a.offsets.detach().clone()}

    @torch.no_grad()
    def estimated_bits(self) -> dict[str, float]:
        """Uncompressed float32 storage (the reference saves a PLY of these tensors)."""
        n, k = self.anchors.num_anchors, self.config.n_offsets
        return {
            "anchor": float(n * 3 * BITS_PER_FLOAT),
            "feat": float(n * self.config.feat_dim * BITS_PER_FLOAT),
            "scaling": float(n * 6 * BITS_PER_FLOAT),
            "offsets": float(n * 3 * k * BITS_PER_FLOAT),
            "hash": 0.0,
            "masks": 0.0,
            "mlps": float(self.mlp_parameter_count() * BITS_PER_FLOAT),
        }

    reference_accounting = (
        "Scaffold-GS's files: point_cloud.ply (save_ply: per anchor x, y, z, three zero normals, 3K offsets, "
        "F features, opacity, 6 log scales, 4 rotation values, all float32, plus the ASCII header) and the "
        "three MLPs at 32 bits per parameter (saved as TorchScript files, whose framing is not counted).")

    def reference_bits(self, estimated=None) -> dict[str, float]:
        """Scaffold-GS's own files (``reference_accounting``): the anchors' PLY and the MLPs. The PLY also
        holds values the model never uses (zero normals, opacity, rotation: ``unused``) and its header."""
        n, k, f = self.anchors.num_anchors, self.config.n_offsets, self.config.feat_dim
        floats = float(n * BITS_PER_FLOAT)
        return {
            "anchor": 3 * floats,
            "feat": f * floats,
            "scaling": 6 * floats,
            "offsets": 3 * k * floats,
            "unused": (3 + 1 + 4) * floats,
            "header": float(8 * len(scaffold_ply_header(n, k, f))),
            "mlps": float(self.mlp_parameter_count() * BITS_PER_FLOAT),
        }

    # -- bitstream -----------------------------------------------------------------------------------
    @classmethod
    def section_names(cls, config) -> list[str]:
        return list(SECTIONS)

    @torch.no_grad()
    def coded_state(self, *, half_networks: bool = False, chunk_anchors: int | None = None) -> CodedState:
        a = self.anchors
        sections = {
            "anchor": encode_floats([a.positions]),
            "feat": encode_floats([a.attributes]),
            "scaling": encode_floats([a.scaling]),
            "offsets": encode_floats([a.offsets]),
            "mlps": encode_floats(self.network_tensors(), half=half_networks),
        }
        return CodedState(self.base_header(), sections)

    @classmethod
    @torch.no_grad()
    def from_coded(cls, config, coded: CodedState) -> "ScaffoldGS":
        n, extent, voxel = cls.coded_size(coded, config)
        # The positions first: their byte count vouches for the header's anchor count before allocating.
        positions = decode_floats(section_reader(coded.sections, "anchor"), [(n, 3)])[0]
        model = cls.empty(config, extent, voxel, n)
        a = model.anchors
        a.positions.copy_(positions)
        targets = {"feat": [a.attributes], "scaling": [a.scaling], "offsets": [a.offsets],
                   "mlps": model.network_tensors()}
        for name, tensors in targets.items():
            values = decode_floats(section_reader(coded.sections, name), [tuple(t.shape) for t in tensors])
            for target, value in zip(tensors, values):
                target.copy_(value)  # state_dict() tensors share storage with the parameters
        model.eval()
        model.render_cache.fill(model.test_state())
        return model
