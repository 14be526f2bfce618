"""The .pgs container: a fixed preamble, a CRC-checked JSON header, a CRC-checked section table and the
section payloads. Every read is bounds-checked against the bytes that are actually there, so a
truncated or corrupt file fails with one :class:`BitstreamError` that names the part concerned, before
anything large is allocated.

Layout (little endian; docs/bitstream.md has the full description):

    magic            8 bytes   89 50 47 53 0D 0A 1A 0A  ("\\x89PGS\\r\\n\\x1a\\n")
    version          u16
    method           u8 length + ASCII name
    header           u32 length + UTF-8 JSON + u32 CRC32 of the JSON
    section count    u16
    section entries  u8 name length + ASCII name + u64 byte length + u32 CRC32 of the payload
    table CRC        u32 CRC32 of the section count and entries
    payloads         in table order, nothing after the last one
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import BitstreamError
from ..parse import ParseError, load_json_text

# PNG-style magic: a non-ASCII first byte, then CR LF, ^Z and LF, so that text-mode transfers that
# rewrite line ends or stop at ^Z are detected at once.
MAGIC = b"\x89PGS\r\n\x1a\n"
FORMAT_VERSION = 5  # 5: HAC++'s mixture coder uses predictgs's own normal CDF (codec/normal.py), the same on
# every machine; 4: constriction's range coder at 24-bit precision in place of torchac, octree-coded anchor
# positions; 2: methods write their own sections and header fields, HAC++ and 3DGS (docs/bitstream.md)
MAX_METHOD_NAME = 64
MAX_HEADER_BYTES = 1 << 20
MAX_SECTIONS = 32
MAX_SECTION_NAME = 32


@dataclass
class Container:
    method: str
    header: dict
    sections: dict[str, bytes]  # in file order

    def section_bytes(self) -> dict[str, int]:
        return {name: len(data) for name, data in self.sections.items()}


class ByteWriter:
    """Little-endian packing into a growing buffer."""

    def __init__(self):
        self.buffer = bytearray()

    def pack(self, fmt: str, *values) -> "ByteWriter":
        self.buffer += struct.pack("<" + fmt, *values)
        return self

    def raw(self, data: bytes) -> "ByteWriter":
        self.buffer += data
        return self

    def array(self, values: np.ndarray, dtype: str) -> "ByteWriter":
        self.buffer += np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buffer)


class ByteReader:
    """Bounds-checked little-endian reading of one part of the file; errors name that part."""

    def __init__(self, data: bytes | memoryview, part: str, offset: int = 0):
        self.data = memoryview(data)
        self.part = part
        self.offset = offset

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def error(self, message: str) -> BitstreamError:
        return BitstreamError(f"{self.part}: {message}")

    def take(self, count: int, what: str) -> memoryview:
        if count < 0 or count > self.remaining:
            raise self.error(f"truncated: {what} needs {count} bytes, {self.remaining} left")
        view = self.data[self.offset:self.offset + count]
        self.offset += count
        return view

    def unpack(self, fmt: str, what: str):
        fmt = "<" + fmt
        values = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))
        return values[0] if len(values) == 1 else values

    def array(self, dtype: str, count: int, what: str, limit: int | None = None) -> np.ndarray:
        """``count`` items, checked against the bytes left (and ``limit``) before anything is allocated."""
        dt = np.dtype(dtype).newbyteorder("<")
        if count < 0 or (limit is not None and count > limit):
            raise self.error(f"{what}: implausible count {count}")
        return np.frombuffer(self.take(count * dt.itemsize, what), dtype=dt).astype(dt.newbyteorder("="))

    def expect_end(self) -> None:
        if self.remaining:
            raise self.error(f"{self.remaining} unexpected bytes after the data")


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def write_container(container: Container) -> bytes:
    method = container.method.encode("ascii")
    if not 0 < len(method) <= MAX_METHOD_NAME:
        raise ValueError(f"method name {container.method!r} is empty or too long")
    header = json.dumps(container.header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    out = ByteWriter().raw(MAGIC).pack("H", FORMAT_VERSION).pack("B", len(method)).raw(method)
    out.pack("I", len(header)).raw(header).pack("I", crc32(header))
    table = ByteWriter().pack("H", len(container.sections))
    for name, data in container.sections.items():
        encoded = name.encode("ascii")
        table.pack("B", len(encoded)).raw(encoded).pack("QI", len(data), crc32(data))
    out.raw(table.getvalue()).pack("I", crc32(table.getvalue()))
    for data in container.sections.values():
        out.raw(data)
    return out.getvalue()


def read_container(data: bytes, known_methods) -> Container:
    """Parse and check the whole container: magic, version, method, header CRC, section table, every
    section's length (against the file's size), then every section's CRC. The payloads are returned
    undecoded: nothing is decoded from a file that fails any of these."""
    data = memoryview(data)
    if len(data) < len(MAGIC) or bytes(data[:len(MAGIC)]) != MAGIC:
        if len(data) < len(MAGIC) and bytes(data) == MAGIC[:len(data)]:
            raise BitstreamError("magic: truncated file (shorter than the 8-byte magic)")
        raise BitstreamError("magic: not a predictgs bitstream (the file does not start with \\x89PGS)")
    reader = ByteReader(data, "preamble", len(MAGIC))
    version = reader.unpack("H", "format version")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"preamble: unsupported format version {version} (this build reads version "
                             f"{FORMAT_VERSION}; files of other versions come from other predictgs releases: "
                             "encode the run again)")
    name_length = reader.unpack("B", "method name length")
    raw_method = bytes(reader.take(name_length, "method name"))
    try:
        method = raw_method.decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError(f"preamble: method name {raw_method!r} is not ASCII") from None
    if method not in known_methods:
        raise BitstreamError(f"preamble: unknown method {method!r} (known: {', '.join(sorted(known_methods))})")

    reader.part = "header"
    header_length = reader.unpack("I", "header length")
    if header_length > MAX_HEADER_BYTES:
        raise BitstreamError(f"header: implausible length {header_length} bytes")
    header_bytes = reader.take(header_length, "JSON header")
    if reader.unpack("I", "header CRC") != crc32(header_bytes):
        raise BitstreamError("header: CRC mismatch (the file is corrupt)")
    try:
        header = load_json_text(bytes(header_bytes).decode("utf-8"))
    except ParseError as err:
        raise BitstreamError(f"header: {err}") from None
    except (UnicodeDecodeError, ValueError):
        raise BitstreamError("header: not valid JSON") from None
    except RecursionError:  # e.g. 100,000 nested brackets: valid JSON, but no header of ours
        raise BitstreamError("header: JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise BitstreamError("header: expected a JSON object")

    reader.part = "section table"
    table_start = reader.offset
    count = reader.unpack("H", "section count")
    if count > MAX_SECTIONS:
        raise BitstreamError(f"section table: implausible section count {count}")
    entries = []
    for _ in range(count):
        length = reader.unpack("B", "section name length")
        if not 0 < length <= MAX_SECTION_NAME:
            raise BitstreamError(f"section table: bad section name length {length}")
        raw_name = bytes(reader.take(length, "section name"))
        size, crc = reader.unpack("QI", "section length and CRC")
        entries.append((raw_name, size, crc))
    table_crc = crc32(data[table_start:reader.offset])
    if reader.unpack("I", "table CRC") != table_crc:
        raise BitstreamError("section table: CRC mismatch (the file is corrupt)")

    # The whole file is checked before any payload is used: first every section's length against the
    # bytes present (a truncated or extended file fails without reading its payloads), then every CRC.
    payloads = []
    for raw_name, size, crc in entries:
        name = raw_name.decode("ascii", errors="replace")
        if any(name == seen for seen, _, _ in payloads):
            raise BitstreamError(f"section table: duplicate section {name!r}")
        payload_reader = ByteReader(data, f"section {name!r}", reader.offset)
        payloads.append((name, payload_reader.take(size, "payload"), crc))
        reader.offset = payload_reader.offset
    if reader.remaining:
        raise BitstreamError(f"end of file: {reader.remaining} unexpected bytes after the last section")
    for name, payload, crc in payloads:
        if crc32(payload) != crc:
            raise BitstreamError(f"section {name!r}: CRC mismatch (the file is corrupt)")
    return Container(method, header, {name: bytes(payload) for name, payload, _ in payloads})
