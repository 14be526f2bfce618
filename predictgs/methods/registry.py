"""Methods register themselves by name: ``@register_method`` on the class.

The built-in methods are the modules of the packages ``baselines`` and ``predictgs.methods``; they are
imported on the first lookup, so adding a method means adding one file there and nothing elsewhere.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import ConfigError

METHOD_PACKAGES = ("baselines", "predictgs.methods")
_REGISTRY: dict[str, type] = {}
_discovered = False


def register_method(cls: type) -> type:
    """Class decorator: make the method available under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no method name")
    if _REGISTRY.get(name, cls) is not cls:
        raise TypeError(f"two methods are registered as {name!r}: {_REGISTRY[name].__name__} and {cls.__name__}")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for package_name in METHOD_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{info.name}")
    _discovered = True


def registry() -> dict[str, type]:
    """Every registered method by name."""
    _discover()
    return dict(_REGISTRY)


def method_class(name: str) -> type:
    methods = registry()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(methods))}")
    return methods[name]


def method_config(name: str, overrides: dict | None = None, prefix: str = "model."):
    """The method's config dataclass with ``overrides`` applied and checked."""
    from ..config import update_dataclass, validate

    cls = method_class(name)
    return validate(update_dataclass(cls.config_class(), overrides or {}, prefix=prefix), prefix=prefix)
