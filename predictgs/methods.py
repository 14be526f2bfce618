"""The methods, registered by name. Each is a small composition of the shared parts."""

from __future__ import annotations

from .errors import ConfigError


def registry() -> dict[str, type]:
    from baselines.hac import HAC
    from baselines.scaffold import ScaffoldGS

    from .predict_gs import PredictGS, PredictGSNoProgressive, PredictGSSFPOnly

    return {cls.name: cls for cls in (ScaffoldGS, HAC, PredictGS, PredictGSSFPOnly, PredictGSNoProgressive)}


def method_class(name: str) -> type:
    methods = registry()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(methods))}")
    return methods[name]


def new_model(method: str, model_config: dict, extent: float, voxel_size: float, num_anchors: int):
    """An instance of the method with ``num_anchors`` zero anchors, to load trained or decoded values
    into; its networks' initial values are drawn without touching the caller's random state."""
    import torch

    from .config import update_dataclass

    cls = method_class(method)
    config = update_dataclass(cls.config_class(), model_config, prefix="model.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = cls.empty(config, extent, voxel_size)
    model.anchors.resize(num_anchors)
    return model
