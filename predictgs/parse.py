"""Reading JSON and YAML text so that no content can end in a traceback, and duplicate keys are errors.

Every JSON and YAML file predictgs reads goes through :func:`load_json_text` or :func:`load_yaml_text`
(configs, run and decoded ``config.yaml``, ``metrics.json``, transforms JSON, the bitstream header, the
workflow's intermediate files). Two things differ from ``json.loads`` and ``yaml.safe_load``:

- **Huge integers.** Python refuses to convert an integer literal of more than 4,300 digits
  (``ValueError: Exceeds the limit (4300 digits) for integer string conversion``), and an integer beyond
  about 10^308 cannot become a float (``OverflowError``). An integer literal of more than
  :data:`HUGE_DIGITS` digits (or a YAML hexadecimal, octal or sexagesimal one that large) is read as a
  :class:`HugeInt`: an ``int`` of value +-10^300, larger than every limit a field declares, whose text
  says how many digits the file wrote ("<an integer of 5000 digits>"). A field then gives its usual
  one-line error ("train.seed: <an integer of 5000 digits> is outside [0, 2^63)"; a float field: "expected a
  finite number").
- **Duplicate keys.** ``{"psnr": 7.7, "psnr": 99}`` or a YAML mapping that names a key twice is a
  :class:`ParseError` naming the key (YAML: and its line), instead of the last one silently winning.
  YAML merge keys (``<<: *base``) still override as YAML defines.

This module imports json and yaml only: the workflow's light scripts use it.
"""

from __future__ import annotations

import json
import math

import yaml

HUGE_DIGITS = 300  # more decimal digits than this: beyond float range (about 1.8e308), read as a HugeInt
_HUGE_VALUE = 10 ** HUGE_DIGITS


class ParseError(ValueError):
    """A JSON or YAML text that parses but is refused (a duplicate key). One line."""


class HugeInt(int):
    """An integer too large to represent usefully: value +-10^300, text "<an integer of N digits>"."""

    digits: int

    def __new__(cls, negative: bool, digits: int):
        value = super().__new__(cls, -_HUGE_VALUE if negative else _HUGE_VALUE)
        value.digits = int(digits)
        return value

    def __repr__(self) -> str:
        return f"<{'a negative' if self < 0 else 'an'} integer of {self.digits} digits>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):
        return HugeInt, (self < 0, self.digits)


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _checked_int(value: int) -> int:
    """``value``, or a HugeInt when it is too large for a float (its digit count estimated from its bits)."""
    if abs(value) <= _HUGE_VALUE:
        return value
    return HugeInt(value < 0, int(abs(value).bit_length() * math.log10(2)) + 1)


# -- JSON ------------------------------------------------------------------------------------------------
def _json_int(text: str) -> int:
    digits = _digit_count(text)
    if digits > HUGE_DIGITS:
        return HugeInt(text.startswith("-"), digits)
    return int(text)


def _json_object(pairs: list) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ParseError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_json_text(text: str):
    """``json.loads`` with HugeInt for huge integers and duplicate keys refused.

    Raises ``json.JSONDecodeError`` (invalid JSON), :class:`ParseError` (a duplicate key) or
    ``RecursionError`` (nesting deeper than Python's recursion limit); all are ValueErrors but the last."""
    return json.loads(text, parse_int=_json_int, object_pairs_hook=_json_object)


# -- YAML ------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags) with HugeInt and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` overrides by design
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports unhashable keys
                if key in seen:
                    raise ParseError(f"duplicate key {key!r} (lines {seen[key] + 1} and "
                                     f"{key_node.start_mark.line + 1})")
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _yaml_int(loader: _Loader, node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    negative = text.startswith("-")
    body = text.lstrip("+-")
    if not body.startswith("0") and ":" not in body and _digit_count(body) > HUGE_DIGITS:
        return HugeInt(negative, _digit_count(body))  # decimal: never handed to int()
    if len(body) > 20 * HUGE_DIGITS:  # binary, octal, hexadecimal or base 60 this long: far beyond the range
        return HugeInt(negative, len(body))
    return _checked_int(yaml.SafeLoader.construct_yaml_int(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml_int)


def load_yaml_text(text: str):
    """``yaml.safe_load`` with HugeInt for huge integers and duplicate keys refused.

    Raises ``yaml.YAMLError`` (invalid YAML, Python tags), :class:`ParseError` (a duplicate key) or
    ``RecursionError``."""
    loader = _Loader(text)  # what yaml.load does, with a SafeLoader
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _represent_huge(dumper: yaml.SafeDumper, value: HugeInt):
    return dumper.represent_scalar("tag:yaml.org,2002:int", int.__repr__(value))


yaml.SafeDumper.add_representer(HugeInt, _represent_huge)

__all__ = ["HUGE_DIGITS", "HugeInt", "ParseError", "load_json_text", "load_yaml_text"]
