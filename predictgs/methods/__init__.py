"""Methods: each a small composition of the shared parts, registered by name (``@register_method``).

The protocol every method follows is in :mod:`predictgs.methods.base`; Predict-GS and its ablation
variants are in :mod:`predictgs.methods.predict_gs`, the baselines in the package ``baselines``."""

from .registry import method_class, method_config, register_method, registry

__all__ = ["method_class", "method_config", "register_method", "registry"]
