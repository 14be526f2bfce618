"""The method protocol, and what every anchor-based method shares.

A method is an ``nn.Module`` registered by name (``@register_method``) with a config dataclass. The
trainer, the codec and the report know it only through this protocol:

    gaussians, terms = method.gaussians(view, step)   # training: step is the trainer's StepState;
                                                      # evaluation (method.eval()): step is ignored
    method.param_groups()          # named parameter groups with their learning-rate schedules
    method.entropy_model()         # the object whose bits() / compress() make estimate and file, or None
    method.strategy(total, seed)   # the densification strategy (anchor growing and pruning)
    method.estimated_bits()        # bits per category (metrics.json, Table 3)
    method.reference_bits()        # bits per category as the reference code counts them (metrics.json)
    method.coded_state()           # CodedState: header fields + sections (the codec writes them)
    Method.from_coded(config, coded)   # the same class, rebuilt from a bitstream
    Method.from_scene(config, scene, seed)   # the model a run starts from (predictgs train)
    method.test_state()            # per-anchor values of the test-time model (what the file decodes to)

``terms`` holds the method's loss terms: ``"rate"`` unweighted by lambda (the trainer's
RateDistortionLoss applies it), the others weighted. The curriculum (quantisation phase, residual
stage, target resolution) comes in the StepState; methods never count iterations.

:class:`AnchorMethod` is the shared machinery of Scaffold-GS, HAC, Predict-GS and their variants: the
anchors, Scaffold-GS's decoder, the visibility prefilter, parameter groups and learning rates, anchor
growing, and the test-time render cache. In evaluation mode a method computes once, from the anchors
alone, everything a frame needs (quantised values, Predict-GS's predicted features) and keeps it in
``render_cache``; a frame then only runs the MLPs of the visible anchors. ``train()`` drops the cache.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from ..codec import CodedState
from ..codec.tensors import round_to_half_
from ..config import bounded
from ..errors import BitstreamError
from ..model.anchors import AnchorSet, choose_voxel_size
from ..model.gaussians import Gaussians
from ..model.scaffold import NeuralGaussians, ScaffoldDecoder, assemble_gaussians, view_inputs
from ..model.view import View
from ..render import visible_mask
from ..train.curriculum import CurriculumConfig, StepState
from ..train.densify import AnchorGrowth, DensifyConfig
from ..train.optim import ParamGroup
from ..train.schedule import ExponentialLR

BITS_PER_FLOAT = 32
MAX_ANCHORS = 1 << 24  # the decoder refuses more
MAX_DECODED_VALUES = 1 << 31  # anchors x values per anchor, likewise


@runtime_checkable
class Method(Protocol):
    name: ClassVar[str]
    config_class: ClassVar[type]
    default_lmbda: ClassVar[float | None]

    def gaussians(self, view: View, step: StepState | None = None) -> tuple[Gaussians, dict[str, Tensor]]: ...

    def param_groups(self) -> list[ParamGroup]: ...

    def entropy_model(self) -> nn.Module | None: ...

    def coded_state(self, *, half_networks: bool = False, chunk_anchors: int | None = None) -> CodedState: ...

    @classmethod
    def from_coded(cls, config, coded: CodedState): ...


def lr_field(init: float, final: float):
    """A learning-rate pair (init, final) of a log-linear decay over the run, each >= 0."""
    return field(default=(init, final), metadata=bounded(0.0, None))


@dataclass
class AnchorConfig:
    """Options shared by the anchor methods. Learning rates are (init, final) of a log-linear decay
    over the run; ``*_scaled`` ones are multiplied by the scene extent (Scaffold-GS's spatial_lr_scale)."""

    feat_dim: int = field(default=32, metadata=bounded(1, 4096))
    n_offsets: int = field(default=10, metadata=bounded(1, 64))
    use_distance: bool = False
    # None: automatic (see model.anchors.auto_voxel_size)
    voxel_size: float | None = field(default=None, metadata=bounded(0.0, None, low_open=True, optional=True))
    lambda_dssim: float = field(default=0.2, metadata=bounded(0.0, 1.0))
    lambda_scale: float = field(default=0.01, metadata=bounded(0.0, None))
    lr_offset_scaled: tuple[float, float] = lr_field(0.01, 0.0001)
    lr_attributes: tuple[float, float] = lr_field(0.0075, 0.0075)
    lr_scaling: tuple[float, float] = lr_field(0.007, 0.007)
    lr_mlp_opacity: tuple[float, float] = lr_field(0.002, 0.00002)
    lr_mlp_cov: tuple[float, float] = lr_field(0.004, 0.004)
    lr_mlp_color: tuple[float, float] = lr_field(0.008, 0.00005)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)


@contextlib.contextmanager
def cpu_seeded(seed: int) -> Iterator[None]:
    """Run a block with the CPU generator seeded with ``seed``, and restore it afterwards. Only the CPU
    generator: ``torch.manual_seed`` would also reseed every CUDA generator, which ``fork_rng(devices=[])``
    does not save, and so reset the caller's CUDA random state. Modules are built on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def lr(pair: tuple[float, float], scale: float = 1.0) -> ExponentialLR:
    return ExponentialLR(pair[0] * scale, pair[1] * scale)


class RenderCache(nn.Module):
    """Per-anchor tensors of the test-time model (buffers: they follow the device; not saved in the
    state dict, since they are derived from it)."""

    def __init__(self):
        super().__init__()
        self.filled = False

    def fill(self, tensors: dict[str, Tensor]) -> None:
        self.clear()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor, persistent=False)
        self.filled = True

    def clear(self) -> None:
        self._buffers.clear()
        self.filled = False

    def tensors(self) -> dict[str, Tensor]:
        return dict(self._buffers)


# -- header fields of a coded model ------------------------------------------------------------------
def header_number(header: dict, key: str, kind, low=None, high=None):
    """header[key] as an int or a finite float within [low, high]; a BitstreamError naming it otherwise."""
    value = header.get(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and kind is float:
        ok = bool(np.isfinite(value))
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        raise BitstreamError(f"header: missing or invalid {key!r}: {value!r}")
    return value


def header_box(header: dict, key: str) -> tuple[Tensor, Tensor]:
    """A stored box {"lower": [3 floats], "upper": [3 floats]} as float32 tensors."""
    box = header.get(key)
    try:
        lower = torch.tensor(box["lower"], dtype=torch.float32)
        upper = torch.tensor(box["upper"], dtype=torch.float32)
    except (TypeError, KeyError, ValueError, RuntimeError, OverflowError):
        raise BitstreamError(f"header: missing or invalid box {key!r}") from None
    if lower.shape != (3,) or upper.shape != (3,) or not (torch.isfinite(lower).all() and torch.isfinite(upper).all()
                                                          and (upper > lower).all()):
        raise BitstreamError(f"header: invalid box {key!r}")
    return lower, upper


def check_sections(cls, config, coded: CodedState) -> None:
    wanted = cls.section_names(config)
    if list(coded.sections) != wanted:
        raise BitstreamError(f"section table: a {cls.name} file has sections {', '.join(wanted)}; "
                             f"this one has {', '.join(coded.sections) or 'none'}")


class MethodBase(nn.Module):
    """What every method shares: the test-time render cache and its life cycle, the optional parts of
    the protocol with their defaults, float16 rounding of the networks."""

    name: ClassVar[str] = "method"
    label: ClassVar[str] = "method"  # the name printed in tables
    config_class: ClassVar[type]
    default_lmbda: ClassVar[float | None] = None  # methods with a rate term set their default rate point
    # Where the voxel size came from (model.anchors.choose_voxel_size), for train.log and metrics.json;
    # None for methods without a voxel grid and for models loaded from a checkpoint or a bitstream.
    voxel_size_source: str | None = None

    def __init__(self, config, extent: float, voxel_size: float):
        super().__init__()
        self.config = config
        self.extent = float(extent)
        self.voxel_size = float(voxel_size)
        self.render_cache = RenderCache()

    @classmethod
    def from_scene(cls, config, scene, seed: int = 0):
        """The model a run starts from (what ``predictgs train`` calls): from the scene's initial points.
        Methods that use more of the scene (3DGS: the points' colours) override it."""
        return cls.from_points(config, scene.points, scene.extent, seed=seed)

    @classmethod
    def resolve_config(cls, config, lmbda: float | None):
        """The configuration of a run at rate-distortion weight ``lmbda`` (settings the reference ties
        to lambda, e.g. HAC++'s mask learning rate); most methods need nothing."""
        return config

    def begin_step(self, step: StepState) -> None:
        """Called by the trainer before each training step (e.g. HAC's box update)."""

    def entropy_model(self) -> nn.Module | None:
        return None

    def train(self, mode: bool = True):
        if mode:
            self.render_cache.clear()
        return super().train(mode)

    def forward(self, view: View, step: StepState | None = None):
        return self.gaussians(view, step)

    def test_state(self) -> dict[str, Tensor]:
        """Per-primitive values the test-time model renders (on the model's device)."""
        raise NotImplementedError

    def cached_test_state(self) -> dict[str, Tensor]:
        """The test-time values, computed once in evaluation mode (in training mode, every call: the
        parameters are still moving, and ``train()`` is what drops the cache)."""
        if self.training:
            return self.test_state()
        if not self.render_cache.filled:
            self.render_cache.fill(self.test_state())
        return self.render_cache.tensors()

    def networks(self) -> dict[str, nn.Module]:
        """The networks stored as floats ("mlps"), in file order (none by default)."""
        return {}

    def network_tensors(self) -> list[Tensor]:
        return [t for module in self.networks().values() for t in module.state_dict().values()]

    def mlp_parameter_count(self) -> int:
        return sum(t.numel() for t in self.network_tensors())

    def rounded_to_half(self):
        """A copy whose network weights are rounded to float16 (what ``--mlp-precision fp16`` stores)."""
        model = copy.deepcopy(self)
        round_to_half_(model.network_tensors())
        model.render_cache.clear()
        return model

    def extra_metrics(self) -> dict:
        """Method-specific entries for metrics.json."""
        return {}

    # -- the reference code's size accounting ---------------------------------------------------------
    # One sentence: how the reference code counts the size of this method's model (the number its papers
    # publish), beside the file's size that the tables report (metrics.json: reference_accounting).
    reference_accounting: ClassVar[str] = "as estimated_bits"

    def reference_bits(self, estimated: dict[str, float] | None = None) -> dict[str, float]:
        """Bits per category of this model as the reference code counts them (``reference_accounting``).
        By default ``estimated_bits`` (``estimated``: its value, when the caller has it), for the methods
        whose estimate is exactly that accounting; the others override it."""
        return dict(self.estimated_bits() if estimated is None else estimated)

    def reference_marks(self) -> dict[str, str]:
        """Categories of ``reference_bits`` that are not counted as the reference does, and why."""
        return {}


class AnchorMethod(MethodBase):
    name: ClassVar[str] = "anchor"
    label: ClassVar[str] = "anchor"
    config_class: ClassVar[type] = AnchorConfig
    with_masks: ClassVar[bool] = False
    # How offset masks act: "opacity" (HAC: the neural opacity is gated before spawning) or "after_spawn"
    # (HAC++: opacity and scale of the spawned Gaussians are gated in training, masked ones dropped at test).
    mask_gate: ClassVar[str] = "opacity"

    def __init__(self, config: AnchorConfig, anchors: AnchorSet, extent: float, voxel_size: float):
        super().__init__(config, extent, voxel_size)
        self.anchors = anchors
        self.decoder = ScaffoldDecoder(config.feat_dim, config.n_offsets, config.use_distance)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def attr_dim(cls, config) -> int:
        """Dimension of the per-anchor coded vector (features; residuals in Predict-GS)."""
        return config.feat_dim

    @classmethod
    def from_points(cls, config, points: np.ndarray, extent: float, seed: int = 0) -> "AnchorMethod":
        voxel, source = choose_voxel_size(config.voxel_size, points)
        anchors = AnchorSet.from_points(points, voxel, cls.attr_dim(config), config.n_offsets, cls.with_masks, seed)
        with cpu_seeded(seed):  # the same seed gives the same initial networks
            model = cls(config, anchors, extent, voxel)
        model.voxel_size_source = source
        return model

    @classmethod
    def empty(cls, config, extent: float, voxel_size: float, num_anchors: int = 0) -> "AnchorMethod":
        """A model with ``num_anchors`` zero anchors to load a checkpoint or a bitstream into; its
        networks' initial values are drawn without touching the caller's random state."""
        with cpu_seeded(0):
            anchors = AnchorSet(num_anchors, cls.attr_dim(config), config.n_offsets, cls.with_masks)
            return cls(config, anchors, extent, voxel_size)

    # -- training ------------------------------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        return [
            ParamGroup("offsets", [self.anchors.offsets], lr(c.lr_offset_scaled, self.extent)),
            ParamGroup("attributes", [self.anchors.attributes], lr(c.lr_attributes)),
            ParamGroup("scaling", [self.anchors.scaling], lr(c.lr_scaling)),
            ParamGroup("mlp_opacity", list(self.decoder.mlp_opacity.parameters()), lr(c.lr_mlp_opacity)),
            ParamGroup("mlp_cov", list(self.decoder.mlp_cov.parameters()), lr(c.lr_mlp_cov)),
            ParamGroup("mlp_color", list(self.decoder.mlp_color.parameters()), lr(c.lr_mlp_color)),
        ]

    def strategy(self, total: int, seed: int = 0) -> AnchorGrowth:
        return AnchorGrowth(self.config.densify, self.voxel_size, total, seed=seed,
                            device=self.anchors.positions.device)

    # -- rendering -----------------------------------------------------------------------------------
    def gaussians(self, view: View, step: StepState | None = None) -> tuple[NeuralGaussians, dict[str, Tensor]]:
        if self.training:
            if step is None:
                raise ValueError("a training step needs the trainer's StepState")
            return self.training_gaussians(view, step)
        cache = self.cached_test_state()
        visible = torch.nonzero(visible_mask(cache["positions"], cache["scaling"][:, 0:3],
                                             **view.render_args())).squeeze(1)
        rows = {name: tensor.index_select(0, visible) for name, tensor in cache.items()}
        return self.render_anchors(view, visible, rows, residual=True), {}

    def training_gaussians(self, view: View, step: StepState) -> tuple[NeuralGaussians, dict[str, Tensor]]:
        raise NotImplementedError

    def render_anchors(self, view: View, visible: Tensor, rows: dict[str, Tensor],
                       residual: bool) -> NeuralGaussians:
        """Scaffold-GS's neural Gaussians of the visible anchors, from their per-anchor values ``rows``
        (positions, attributes, scaling [activated], offsets [V,K,3], optional masks [V,K,1])."""
        positions = rows["positions"]
        dirs, dist = view_inputs(positions, view.center)
        opacity, cov, color = self.decoder(rows["attributes"], dirs, dist)
        return self.spawn(visible, rows, opacity, cov[..., 0:3], cov[..., 3:7], color)

    def spawn(self, visible: Tensor, rows: dict[str, Tensor], opacity: Tensor, scale_logits: Tensor,
              rotations: Tensor, colors: Tensor) -> NeuralGaussians:
        """The neural Gaussians of the visible anchors from their activated opacity [V,K], scale logits,
        rotations and colours, with the offset masks applied as the method's ``mask_gate`` says."""
        masks, after = rows.get("masks"), None
        if masks is not None:
            if self.mask_gate == "opacity":
                opacity = opacity * masks[..., 0]
            else:
                after = masks
        offsets = rows["offsets"].reshape(opacity.shape[0], -1, 3)
        return assemble_gaussians(visible, rows["positions"], offsets, rows["scaling"], opacity, scale_logits,
                                  rotations, colors, gaussian_masks=after, drop_masked=not self.training)

    def visible_anchors(self, view: View, positions: Tensor) -> Tensor:
        """Scaffold-GS's prefilter: anchors drawn as Gaussians with their first three scales."""
        scales = self.anchors.scaling_activated()[:, 0:3].detach()
        return torch.nonzero(visible_mask(positions, scales, **view.render_args())).squeeze(1)

    def loss_terms(self, neural: NeuralGaussians) -> dict[str, Tensor]:
        """Scaffold-GS's volume regulariser, 0.01 mean(prod(scale)) of the spawned Gaussians."""
        if not neural.count:  # a shape, known without a synchronisation
            return {}
        return {"scale": self.config.lambda_scale * neural.scales.prod(dim=1).mean()}

    # -- size ----------------------------------------------------------------------------------------
    @property
    def num_primitives(self) -> int:
        """Rows of the per-primitive state (anchors here): what a checkpoint or bitstream sizes."""
        return self.anchors.num_anchors

    def resize(self, num: int) -> None:
        """Give the per-primitive state ``num`` zero rows (before loading a checkpoint)."""
        self.anchors.resize(num)

    def counts(self) -> dict[str, int | None]:
        """What metrics.json reports: anchors the bitstream stores, Gaussians they can spawn."""
        return {"num_anchors": self.kept_anchor_count(), "num_gaussians": self.active_gaussian_count()}

    def networks(self) -> dict[str, nn.Module]:
        return {"mlp_opacity": self.decoder.mlp_opacity, "mlp_cov": self.decoder.mlp_cov,
                "mlp_color": self.decoder.mlp_color}

    def kept_anchor_count(self) -> int:
        """Anchors the bitstream stores."""
        return self.anchors.num_anchors

    def active_gaussian_count(self) -> int:
        """Neural Gaussians the stored anchors can spawn (K per anchor unless masked)."""
        return self.anchors.num_anchors * self.config.n_offsets

    def estimated_bits(self) -> dict[str, float]:
        raise NotImplementedError

    # -- decoding limits -----------------------------------------------------------------------------
    @classmethod
    def section_names(cls, config) -> list[str]:
        raise NotImplementedError

    @classmethod
    def coded_size(cls, coded: CodedState, config) -> tuple[int, float, float]:
        """(anchor count, extent, voxel size) of a coded model, checked against the decoder's limits
        before anything is allocated."""
        check_sections(cls, config, coded)
        n = header_number(coded.header, "num_anchors", int, 0, MAX_ANCHORS)
        extent = header_number(coded.header, "extent", float, 0.0)
        voxel = header_number(coded.header, "voxel_size", float, 0.0)
        if extent <= 0 or voxel <= 0:
            raise BitstreamError("header: extent and voxel_size must be positive")
        per_anchor = cls.attr_dim(config) + 6 + 4 * config.n_offsets
        if n * per_anchor > MAX_DECODED_VALUES:
            raise BitstreamError(f"header: {n} anchors of {per_anchor} values exceed the decoder's limit")
        return n, extent, voxel

    def base_header(self) -> dict:
        return {"num_anchors": self.kept_anchor_count(), "extent": self.extent, "voxel_size": self.voxel_size}
