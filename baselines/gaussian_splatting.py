"""3D Gaussian Splatting (Kerbl et al., SIGGRAPH 2023): the uncompressed reference row of Table 1.

Explicit Gaussians initialised from the scene's SfM points (:class:`predictgs.model.splats.GaussianCloud`),
view-dependent colour by spherical harmonics up to degree 3 (raised by one every 1,000/30,000 of the
run), trained with 3DGS's learning rates and adaptive density control (clone, split, prune, opacity
reset; :mod:`predictgs.train.gs_densify`, after gsplat's ``DefaultStrategy``). No rate term.

Size. The size of 3DGS in the tables is that of the PLY file 3DGS writes (``save_ply``: 62 float32 per
Gaussian at degree 3, plus its ASCII header), which is what the 3DGS, HAC and Predict-GS papers report;
``estimated_bits()`` is that file's size (one category, ``"ply"``) and :func:`write_ply` writes it. The
.pgs bitstream stores the same float32 values losslessly (without the PLY's zero normals, each section
deflated where that helps) so that ``predictgs encode / decode / eval`` work; it is slightly smaller
than the PLY and is not the size the paper's tables use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from predictgs.codec import CodedState, section_reader
from predictgs.codec.tensors import decode_floats, encode_floats
from predictgs.config import bounded
from predictgs.errors import BitstreamError
from predictgs.io import write_atomic
from predictgs.methods.base import MAX_DECODED_VALUES, MethodBase, check_sections, header_number, lr, lr_field
from predictgs.methods.registry import register_method
from predictgs.model.gaussians import Gaussians
from predictgs.model.splats import GaussianCloud, parse_ply, ply_bytes, ply_size
from predictgs.train.curriculum import CurriculumConfig, StepState
from predictgs.train.gs_densify import GaussianDensification, GaussianDensifyConfig
from predictgs.train.optim import ParamGroup
from predictgs.train.schedule import interval, paper_fraction

SECTIONS = ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest")
MAX_GAUSSIANS = 1 << 25  # the decoder refuses more


def sh_degree_at(iteration: int, total: int, every: float, max_degree: int) -> int:
    """The SH degree used at ``iteration`` (1-based): one more every ``every`` of the run, up to
    ``max_degree`` (3DGS raises it at iterations 1000, 2000, 3000 of 30,000)."""
    return min(max_degree, iteration // interval(every, total))


@dataclass
class GaussianSplattingConfig:
    """3DGS's settings. Learning rates are (init, final) of a log-linear decay over the run;
    ``lr_means_scaled`` is multiplied by the scene extent (3DGS's spatial_lr_scale)."""

    sh_degree: int = field(default=3, metadata=bounded(0, 3))
    sh_degree_every: float = field(default=paper_fraction(1000), metadata=bounded(0.0, 1.0, low_open=True))
    init_opacity: float = field(default=0.1, metadata=bounded(0.0, 1.0, low_open=True, high_open=True))
    lambda_dssim: float = field(default=0.2, metadata=bounded(0.0, 1.0))
    lr_means_scaled: tuple[float, float] = lr_field(1.6e-4, 1.6e-6)
    lr_sh0: tuple[float, float] = lr_field(2.5e-3, 2.5e-3)
    lr_shN: tuple[float, float] = lr_field(2.5e-3 / 20, 2.5e-3 / 20)
    lr_opacities: tuple[float, float] = lr_field(5e-2, 5e-2)
    lr_scales: tuple[float, float] = lr_field(5e-3, 5e-3)
    lr_quats: tuple[float, float] = lr_field(1e-3, 1e-3)
    densify: GaussianDensifyConfig = field(default_factory=GaussianDensifyConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)


@register_method
class GaussianSplatting(MethodBase):
    name = "3dgs"
    label = "3DGS"
    config_class = GaussianSplattingConfig

    def __init__(self, config: GaussianSplattingConfig, cloud: GaussianCloud, extent: float):
        super().__init__(config, extent, voxel_size=0.0)  # no voxel grid (the run files record the field)
        self.cloud = cloud

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_points(cls, config, points: np.ndarray, extent: float, seed: int = 0,
                    colors: np.ndarray | None = None) -> "GaussianSplatting":
        """3DGS's initialisation (deterministic: ``seed`` is not used)."""
        return cls(config, GaussianCloud.from_points(points, colors, config.sh_degree, config.init_opacity), extent)

    @classmethod
    def from_scene(cls, config, scene, seed: int = 0) -> "GaussianSplatting":
        """From the scene's points and their colours."""
        return cls.from_points(config, scene.points, scene.extent, seed, colors=scene.colors)

    @classmethod
    def empty(cls, config, extent: float, voxel_size: float = 0.0, num: int = 0) -> "GaussianSplatting":
        """``num`` zero Gaussians to load a checkpoint or a bitstream into."""
        return cls(config, GaussianCloud(num, config.sh_degree), extent)

    # -- training ------------------------------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        c, g = self.config, self.cloud
        return [
            ParamGroup("means", [g.means], lr(c.lr_means_scaled, self.extent)),
            ParamGroup("scales", [g.scales], lr(c.lr_scales)),
            ParamGroup("quats", [g.quats], lr(c.lr_quats)),
            ParamGroup("opacities", [g.opacities], lr(c.lr_opacities)),
            ParamGroup("sh0", [g.sh0], lr(c.lr_sh0)),
            ParamGroup("shN", [g.shN], lr(c.lr_shN)),
        ]

    def strategy(self, total: int, seed: int = 0) -> GaussianDensification:
        return GaussianDensification(self.config.densify, self.extent, total, seed=seed,
                                     device=self.cloud.means.device)

    # -- rendering -----------------------------------------------------------------------------------
    def gaussians(self, view, step: StepState | None = None) -> tuple[Gaussians, dict[str, Tensor]]:
        """Every Gaussian (the rasterizer culls). Training: at the step's SH degree; evaluation: from
        the cached activated values at the full degree."""
        if self.training:
            if step is None:
                raise ValueError("a training step needs the trainer's StepState")
            c, g = self.config, self.cloud
            degree = sh_degree_at(step.iteration, step.total, c.sh_degree_every, c.sh_degree)
            return Gaussians(means=g.means, quats=g.quats_normalised(), scales=g.scales_activated(),
                             opacities=g.opacities_activated(), colors=g.sh_coefficients(), sh_degree=degree), {}
        cache = self.cached_test_state()
        return Gaussians(means=cache["means"], quats=cache["quats"], scales=cache["scales"],
                         opacities=cache["opacities"], colors=cache["colors"], sh_degree=self.config.sh_degree), {}

    # -- the test-time model -------------------------------------------------------------------------
    @torch.no_grad()
    def test_state(self) -> dict[str, Tensor]:
        """The activated Gaussians the test-time model renders."""
        g = self.cloud
        return {"means": g.means.detach().clone(), "quats": g.quats_normalised().detach(),
                "scales": g.scales_activated().detach(), "opacities": g.opacities_activated().detach(),
                "colors": g.sh_coefficients().detach()}

    # -- size ----------------------------------------------------------------------------------------
    @property
    def num_primitives(self) -> int:
        return self.cloud.num

    def resize(self, num: int) -> None:
        self.cloud.resize(num)

    def counts(self) -> dict[str, int | None]:
        return {"num_anchors": None, "num_gaussians": self.cloud.num}

    def extra_metrics(self) -> dict:
        # table_size_bytes: the size the tables report for 3DGS (the PLY), not the .pgs's.
        return {"sh_degree": self.config.sh_degree, "ply_size_bytes": self.ply_size(),
                "table_size_bytes": self.ply_size()}

    def ply_size(self) -> int:
        return ply_size(self.cloud.num, self.config.sh_degree)

    def estimated_bits(self) -> dict[str, float]:
        """The size of 3DGS's PLY file (the size the tables report for 3DGS)."""
        return {"ply": float(8 * self.ply_size())}

    reference_accounting = ("3DGS's point_cloud.ply (save_ply): 62 float32 per Gaussian at SH degree 3 plus the "
                            "ASCII header. This is estimated_bits.")

    # -- bitstream -----------------------------------------------------------------------------------
    @classmethod
    def section_names(cls, config) -> list[str]:
        return list(SECTIONS)

    def _section_tensors(self) -> dict[str, list[Tensor]]:
        g = self.cloud
        return {"means": [g.means], "scales": [g.scales], "quats": [g.quats], "opacities": [g.opacities],
                "sh_dc": [g.sh0], "sh_rest": [g.shN]}

    @torch.no_grad()
    def coded_state(self, *, half_networks: bool = False, chunk_anchors: int | None = None) -> CodedState:
        """The raw float32 parameters, one section each (lossless; the options concern networks and
        anchors, which 3DGS has not)."""
        sections = {name: encode_floats(tensors) for name, tensors in self._section_tensors().items()}
        return CodedState({"num_gaussians": self.cloud.num, "extent": self.extent}, sections)

    @classmethod
    @torch.no_grad()
    def from_coded(cls, config, coded: CodedState) -> "GaussianSplatting":
        check_sections(cls, config, coded)
        n = header_number(coded.header, "num_gaussians", int, 0, MAX_GAUSSIANS)
        extent = header_number(coded.header, "extent", float, 0.0)
        if extent <= 0:
            raise BitstreamError("header: extent must be positive")
        per_gaussian = 11 + 3 * (config.sh_degree + 1) ** 2
        if n * per_gaussian > MAX_DECODED_VALUES:
            raise BitstreamError(f"header: {n} Gaussians of {per_gaussian} values exceed the decoder's limit")
        # The positions first: their byte count vouches for the header's count before allocating.
        means = decode_floats(section_reader(coded.sections, "means"), [(n, 3)])[0]
        model = cls.empty(config, extent, 0.0, n)
        model.cloud.means.copy_(means)
        for name, tensors in model._section_tensors().items():
            if name == "means":
                continue
            values = decode_floats(section_reader(coded.sections, name), [tuple(t.shape) for t in tensors])
            for target, value in zip(tensors, values):
                target.copy_(value)
        model.eval()
        model.render_cache.fill(model.test_state())
        return model


# -- the PLY file -----------------------------------------------------------------------------------
def write_ply(model: GaussianSplatting, path: Path) -> int:
    """Write the model as the PLY file 3DGS's ``save_ply`` writes. -> its size in bytes (what
    ``estimated_bits()`` reports, over 8)."""
    data = ply_bytes(model.cloud)
    write_atomic(Path(path), data)
    return len(data)


def read_ply(path: Path, config: GaussianSplattingConfig | None = None, extent: float = 1.0) -> GaussianSplatting:
    """A model (in eval mode) from a 3DGS PLY file, e.g. one written by :func:`write_ply` or by 3DGS."""
    sh_degree, tensors = parse_ply(Path(path).read_bytes())
    config = config or GaussianSplattingConfig(sh_degree=sh_degree)
    if config.sh_degree != sh_degree:
        raise ValueError(f"the file has SH degree {sh_degree}, the configuration {config.sh_degree}")
    model = GaussianSplatting.empty(config, extent, 0.0, tensors["means"].shape[0])
    with torch.no_grad():
        for name, param in model.cloud.parameter_rows().items():
            param.copy_(tensors[name])
    return model.eval()
