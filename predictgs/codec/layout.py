"""What a bitstream holds for a model, and the checks that come before the decoder allocates anything:
the header fields, the model configuration and its size limits, the MLP tensors, the hash tables.

Methods are recognised by what they have (their model and config classes alike), not by name, so that
a new method composed of the same parts (or an ablation variant) is coded without changes here:
- an entropy model (``model.context``): HAC's streams;
- a Spatial Feature Pool (``model.sfp``): Predict-GS's extra hash tables; its per-anchor vector is the
  residual f_r, and its section is called "residual" (as in ``estimated_bits``) instead of "feat";
- neither: Scaffold-GS's float32 tensors.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import update_dataclass
from ..errors import BitstreamError, ConfigError, PredictGSError
from ..methods import method_class, new_model
from ..nn.hashgrid import HAC_GRID_RESOLUTIONS, HAC_PLANE_RESOLUTIONS, level_table_sizes

MAX_ANCHORS = 1 << 24
MAX_CHUNK_ANCHORS = 1 << 16
MAX_DECODED_VALUES = 1 << 31  # anchors x coded values per anchor
MAX_TABLE_VALUES = 1 << 26  # binary hash-table entries (x features) of one encoding
MAX_WIDTH = 4096  # feature dimensions, hidden widths
MAX_OFFSETS = 64


def has_entropy_model(model_or_config) -> bool:
    return hasattr(model_or_config, "context")


def has_sfp(model_or_config) -> bool:
    return hasattr(model_or_config, "sfp")


def attribute_section(model) -> str:
    return "residual" if has_sfp(model) else "feat"


def section_names(model) -> list[str]:
    """The sections of a model's bitstream, in file order."""
    if not has_entropy_model(model):
        return ["anchor", "feat", "scaling", "offsets", "mlps"]
    names = ["anchor", "masks", "hash"] + (["sfp"] if has_sfp(model) else [])
    return names + [attribute_section(model), "scaling", "offsets", "mlps"]


def mlp_tensors(model) -> list[tuple[str, torch.Tensor]]:
    """Every network weight stored in fp32: everything in the state dict but the per-anchor tensors,
    the decoded values and the binarised hash tables (which have sections of their own)."""
    return [(name, t) for name, t in model.state_dict().items()
            if not name.startswith(("anchors.", "decoded.")) and ".encoding." not in name]


def hash_tables(encoding) -> list[torch.nn.Parameter]:
    return [table.params for table in encoding.tables()]


# -- header checks -----------------------------------------------------------------------------------
def header_field(header: dict, key: str, kind, check=None):
    """header[key] of the given JSON type (int, float, str), optionally checked; a BitstreamError
    naming the field otherwise."""
    value = header.get(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if not ok or (check is not None and not check(value)):
        raise BitstreamError(f"header: missing or invalid {key!r}: {value!r}")
    return value


def header_box(header: dict, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A stored box {"lower": [3 floats], "upper": [3 floats]} as float32 tensors."""
    box = header.get(key)
    try:
        lower = torch.tensor(box["lower"], dtype=torch.float32)
        upper = torch.tensor(box["upper"], dtype=torch.float32)
    except (TypeError, KeyError, ValueError, RuntimeError):
        raise BitstreamError(f"header: missing or invalid box {key!r}") from None
    if lower.shape != (3,) or upper.shape != (3,) or not (torch.isfinite(lower).all() and torch.isfinite(upper).all()
                                                          and (upper > lower).all()):
        raise BitstreamError(f"header: invalid box {key!r}")
    return lower, upper


def box_json(bounds) -> dict:
    """A float32 box as JSON numbers: each float32 is a double exactly, and JSON keeps doubles exact."""
    return {"lower": [float(v) for v in bounds.lower.to(torch.float32)],
            "upper": [float(v) for v in bounds.upper.to(torch.float32)]}


def _table_values(context_like) -> int:
    grid = sum(level_table_sizes(HAC_GRID_RESOLUTIONS, 3, context_like.log2_grid))
    planes = 3 * sum(level_table_sizes(HAC_PLANE_RESOLUTIONS, 2, context_like.log2_plane))
    return (grid + planes) * context_like.features_per_level


def parse_config(method: str, header: dict, num_anchors: int):
    """The header's model configuration as the method's config dataclass, after checking that every
    size it implies (with ``num_anchors``) is sane. -> (config, extent, voxel size)."""
    model_config = header.get("model")
    if not isinstance(model_config, dict):
        raise BitstreamError("header: missing model configuration")
    extent = header_field(header, "extent", float, lambda v: v > 0)
    voxel = header_field(header, "voxel_size", float, lambda v: v > 0)
    try:
        config = update_dataclass(method_class(method).config_class(), model_config, prefix="model.")
    except ConfigError as err:
        raise BitstreamError(f"header: invalid model configuration ({err})") from None
    _check_sizes(config, num_anchors)
    return config, extent, voxel


def build_model(method: str, config, extent: float, voxel: float, num_anchors: int):
    """A fresh model to decode into (this is where the decoder's big allocations happen)."""
    try:
        return new_model(method, dataclasses.asdict(config), extent, voxel, num_anchors)
    except PredictGSError as err:
        raise BitstreamError(f"header: invalid model configuration ({err})") from None


def _check_sizes(config, num_anchors: int) -> None:
    def limit(name: str, value, low: int, high: int):
        if not isinstance(value, int) or not low <= value <= high:
            raise BitstreamError(f"header: model.{name} = {value!r} is outside [{low}, {high}]")

    limit("feat_dim", config.feat_dim, 1, MAX_WIDTH)
    limit("n_offsets", config.n_offsets, 1, MAX_OFFSETS)
    per_anchor = config.feat_dim + 6 + 4 * config.n_offsets
    for name in ("residual_dim", "mgrd_hidden"):
        if hasattr(config, name):
            limit(name, getattr(config, name), 0 if name == "residual_dim" else 1, MAX_WIDTH)
    for prefix in ("context", "sfp"):
        part = getattr(config, prefix, None)
        if part is None:
            continue
        limit(f"{prefix}.log2_grid", part.log2_grid, 1, 24)
        limit(f"{prefix}.log2_plane", part.log2_plane, 1, 24)
        limit(f"{prefix}.features_per_level", part.features_per_level, 1, 64)
        hidden = "hidden_dim" if prefix == "context" else "fusion_hidden"
        limit(f"{prefix}.{hidden}", getattr(part, hidden), 1, MAX_WIDTH)
        if _table_values(part) > MAX_TABLE_VALUES:
            raise BitstreamError(f"header: model.{prefix} hash tables of {_table_values(part)} values exceed "
                                 f"the limit of {MAX_TABLE_VALUES}")
    if num_anchors * per_anchor > MAX_DECODED_VALUES:
        raise BitstreamError(f"header: {num_anchors} anchors of {per_anchor} values exceed the decoder's limit")
