"""One config system: dataclasses, saved as YAML with every run, overridable from a YAML file.

``update_dataclass(obj, mapping)`` applies nested overrides, rejecting unknown keys, values of the wrong
type or tuple length, and values outside a field's declared range, with a ConfigError that names the key.
A field declares its range once, beside its default, in the field's metadata:

    feat_dim: int = field(default=50, metadata=bounded(1, 4096))
    schedule: str = field(default="cosine", metadata=choice(("cosine", "linear", "none", "off")))

:func:`validate` checks a whole dataclass (nested ones included) against those declarations.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError
from .parse import HugeInt, ParseError, load_yaml_text

CHECK = "predictgs.check"
SEED_LIMIT = 2**63  # seeds are 0 <= seed < 2^63 (numpy and torch both take them)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device(name, key: str = "device") -> str:
    """A device name as the options accept it: auto, cpu, cuda, cuda:N or mps."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ConfigError(f"{key}: unknown device {name!r} (auto, cpu, cuda, cuda:N or mps)")
    return name


def _number_text(value) -> str:
    """Integers exactly (2^k written as such when k >= 20), floats in %g."""
    if isinstance(value, int):
        return f"2^{value.bit_length() - 1}" if value >= 2**20 and value & (value - 1) == 0 else str(value)
    return f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed (or half-open) numeric interval; ``optional`` admits None."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False

    def __call__(self, value, key: str) -> None:
        if value is None and self.optional:
            return
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, HugeInt):  # an integer of hundreds of digits: beyond any range
                raise ConfigError(f"{key}: {value!r} is outside {self.describe()}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            below = self.low is not None and (v <= self.low if self.low_open else v < self.low)
            above = self.high is not None and (v >= self.high if self.high_open else v > self.high)
            if below or above:
                raise ConfigError(f"{key}: {value!r} is outside {self.describe()}")

    def describe(self) -> str:
        low = "-inf" if self.low is None else _number_text(self.low)
        high = "inf" if self.high is None else _number_text(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}" \
               f"{')' if self.high_open or self.high is None else ']'}"


@dataclasses.dataclass(frozen=True)
class Choice:
    options: tuple

    def __call__(self, value, key: str) -> None:
        if value not in self.options:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, self.options))}")


def bounded(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False, optional: bool = False) -> dict:
    """Field metadata: the value (each item of a tuple) lies in [low, high] (open ends as asked)."""
    return {CHECK: Range(low, high, low_open, high_open, optional)}


def positive(optional: bool = False) -> dict:
    """Field metadata: a number > 0."""
    return bounded(0, None, low_open=True, optional=optional)


def choice(options) -> dict:
    """Field metadata: one of ``options``."""
    return {CHECK: Choice(tuple(options))}


def _finite(value) -> bool:
    """A number that is finite as a float (an integer beyond about 1.8e308, or a HugeInt, is not)."""
    if isinstance(value, HugeInt):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_field(field: dataclasses.Field, value, key: str) -> None:
    check = field.metadata.get(CHECK)
    if check is not None:
        check(value, key)


def validate(obj, prefix: str = ""):
    """Check every field of a dataclass (recursively) against its declared range; returns ``obj``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, prefix=f"{prefix}{f.name}.")
        else:
            _check_field(f, value, f"{prefix}{f.name}")
    return obj


def check_fields(obj, prefix: str = ""):
    """Type-check every field of a dataclass against its annotation (coercing as :func:`update_dataclass`
    does, e.g. an int for a float field), then against its declared range; nested dataclasses too.
    Updates ``obj`` in place (frozen ones included) and returns it. For ``__post_init__``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, prefix=f"{key}.")
            continue
        value = _coerce(value, hints[f.name], key)
        _check_field(f, value, key)
        object.__setattr__(obj, f.name, value)
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def _coerce(value, annotation, key: str):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
            items = [_coerce(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not _finite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return update_dataclass(annotation(), value, prefix=f"{key}.")
    return value


def update_dataclass(obj, overrides: Mapping, prefix: str = ""):
    """A copy of the dataclass ``obj`` with nested ``overrides`` applied and type-checked."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {overrides!r}")
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix}{key!s} (known: {', '.join(sorted(fields))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = update_dataclass(current, value, prefix=f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, hints[key], f"{prefix}{key}")
            _check_field(fields[key], changes[key], f"{prefix}{key}")
    return dataclasses.replace(obj, **changes)


def load_yaml(path: Path) -> dict:
    """A YAML file holding a mapping (an empty file is {}), read with a ``yaml.SafeLoader``
    (:func:`predictgs.parse.load_yaml_text`): tags that would build Python objects and duplicate keys are
    refused, integers too large for any field are read as a :class:`~predictgs.parse.HugeInt`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8")) or {}
    except ParseError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def dump_yaml(data: Mapping, path: Path) -> None:
    from .io import write_atomic

    write_atomic(path, yaml.safe_dump(plain(data), sort_keys=False))


def plain(value):
    """Nested mappings/sequences of YAML scalars (tuples become lists, paths strings), as a saved
    config.yaml reads back."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
