"""Bitstreams: one .pgs file per trained model, whose size is the size reported.

The codec is generic. A method's ``coded_state()`` returns a :class:`CodedState` (header fields + named
byte sections, produced by its entropy models' ``compress``); the codec writes it into the container with
the method's name and configuration, and gives it back, checked, to ``Method.from_coded``. Nothing here
knows a method's fields. The format is described in docs/bitstream.md:

- ``container``  the file structure (magic, version, CRC-checked JSON header and section table);
- ``rangecoder`` the one entropy coder (constriction's range coder on exact 24-bit integer distributions);
- ``arithmetic`` Bernoulli and discretised-Gaussian streams on it; ``mixture`` HAC++'s mixtures;
- ``positions``  anchor positions in Morton order (``octree``: the octree coder, or Morton varints);
- ``tensors``    float sections (networks, Scaffold-GS's per-anchor tensors).

Every corrupt or foreign input raises :class:`predictgs.errors.BitstreamError` naming the part concerned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import BitstreamError
from .container import ByteReader, Container, read_container, write_container

__all__ = ["CodedState", "BitstreamError", "write_bitstream", "read_bitstream", "section_reader"]


@dataclass
class CodedState:
    """What a method stores: header fields (JSON values) and named sections, in file order."""

    header: dict = field(default_factory=dict)
    sections: dict[str, bytes] = field(default_factory=dict)

    def section_bytes(self) -> dict[str, int]:
        return {name: len(data) for name, data in self.sections.items()}


def write_bitstream(method: str, header: dict, coded: CodedState) -> bytes:
    """The file of a coded model: ``header`` (the model configuration and run facts) merged with the
    method's own header fields."""
    clash = set(header) & set(coded.header)
    if clash:
        raise ValueError(f"header fields {sorted(clash)} are set twice")
    return write_container(Container(method, {**header, **coded.header}, coded.sections))


def read_bitstream(data: bytes, known_methods: Iterable[str]) -> Container:
    """The checked container of a file (magic, version, method name, CRCs, section table)."""
    return read_container(data, set(known_methods))


def section_reader(sections: dict[str, bytes], name: str) -> ByteReader:
    if name not in sections:
        raise BitstreamError(f"section table: the section {name!r} is missing")
    return ByteReader(sections[name], f"section {name!r}")
