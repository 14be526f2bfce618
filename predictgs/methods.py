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
