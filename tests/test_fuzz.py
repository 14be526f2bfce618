"""Bitstream fuzzing, every method: corrupt files must be refused with a BitstreamError, and nothing else.

For each registered method a tiny model (about 150 anchors, small networks and hash grids) is encoded,
then ``PREDICTGS_FUZZ_CASES`` corrupt versions of its file are decoded (default 1,000 per method, about
10-20 s per method on a CPU; ``make fuzz`` runs 5,000). The corruptions are drawn from a seeded ``random.Random`` per (method, case), so a run
is reproducible and a failure is reported with its case number and a description of the edit.

Kinds of corruption:

- ``bytes``: flips, truncations, insertions, deletions, overwrites and appended junk anywhere in the
  file, CRCs left as they are. The file must be refused (it can only decode if the edit changed nothing).
- ``section``: the same edits to one section's payload, the file then resealed with valid CRCs, so the
  section decoders (arithmetic coder, positions, float tensors) see the damage. Decoding may succeed.
- ``header``: a value of the JSON header (anywhere in it, the model configuration included) replaced by
  a hostile one (huge, negative, NaN, infinite, of another type, deeply nested), a key deleted or
  added; resealed. Decoding may succeed (e.g. a harmless unknown run fact).
- ``structure``: sections reordered, duplicated, dropped, renamed, added (refused), or two payloads
  swapped (refused by the section decoders unless the two have the same format and size); resealed.
- ``crafted``: files a checksum cannot catch: a header nested 100,000 levels deep, huge shapes (feature
  sizes and anchor counts at and beyond the decoder's limits), section lengths or counts that lie, an
  over-long header; all with valid CRCs. Refused.

A case fails when decoding raises anything but BitstreamError, when an edit the decoder must refuse
decodes, when a case takes longer than ``CASE_SECONDS`` (a hang), or when memory grows by more than
``MEMORY_LIMIT_BYTES`` (address space is capped during the run, so a huge allocation fails instead).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import resource
import signal
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from predictgs.errors import BitstreamError

FUZZ_CASES = int(os.environ.get("PREDICTGS_FUZZ_CASES", "1000"))
CASE_SECONDS = float(os.environ.get("PREDICTGS_FUZZ_CASE_SECONDS", "20"))
MEMORY_LIMIT_BYTES = 4 << 30  # address space the fuzz run may add: a decoder that allocates more fails
MAGIC = b"\x89PGS\r\n\x1a\n"


# -- tiny models -----------------------------------------------------------------------------------------
def tiny_model(name: str):
    """A small model of the method with random values (HAC family: drawn from its own entropy model)."""
    from predictgs.entropy.anchor import ContextConfig
    from predictgs.methods import method_class
    from predictgs.methods.predict_gs import SFPConfig
    from predictgs.methods.synthetic import random_hac

    cls = method_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    if "context" not in fields:  # no entropy model (Scaffold-GS, 3DGS): random parameters
        if "feat_dim" in fields:
            config = cls.config_class(feat_dim=8, n_offsets=4, voxel_size=2.0 / 64)
        else:
            config = cls.config_class()
        points = np.random.default_rng(0).uniform(-1, 1, (150, 3)).astype(np.float32)
        model = cls.from_points(config, points, extent=2.0, seed=0)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        return model.eval()
    options = dict(feat_dim=8, n_offsets=4, context=ContextConfig(log2_grid=6, log2_plane=6, hidden_dim=16))
    if "channel_chunks" in fields:  # HAC++: the features coded in chunks of channels
        options.update(channel_chunks=2)
    if "sfp" in fields:
        options.update(sfp=SFPConfig(log2_grid=6, log2_plane=6, fusion_hidden=16), mgrd_hidden=8)
        if cls.config_class().residual_dim:
            options.update(residual_dim=4)
    return random_hac(150, seed=1, config=cls.config_class(**options), method_class=cls)


def method_names() -> list[str]:
    from predictgs.methods import registry

    return sorted(registry())


# -- the container, read and written independently of the package -----------------------------------------
@dataclass
class Parsed:
    version: int
    method: bytes
    header: dict
    sections: list  # [(name bytes, payload bytes)]


def parse(data: bytes) -> Parsed:
    pos = len(MAGIC)
    version, name_length = struct.unpack_from("<HB", data, pos)
    method = data[pos + 3:pos + 3 + name_length]
    pos += 3 + name_length
    (length,) = struct.unpack_from("<I", data, pos)
    header = json.loads(data[pos + 4:pos + 4 + length])
    pos += 8 + length
    (count,) = struct.unpack_from("<H", data, pos)
    pos += 2
    entries = []
    for _ in range(count):
        n = data[pos]
        name = data[pos + 1:pos + 1 + n]
        (size,) = struct.unpack_from("<Q", data, pos + 1 + n)
        entries.append((name, size))
        pos += 1 + n + 12
    pos += 4
    sections = []
    for name, size in entries:
        sections.append((name, data[pos:pos + size]))
        pos += size
    return Parsed(version, method, header, sections)


def crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def build(parsed: Parsed, header: bytes | None = None, sizes: list | None = None, count: int | None = None) -> bytes:
    """A file with valid CRCs. ``header`` replaces the JSON bytes, ``sizes`` the section lengths written in
    the table (lies about the payloads), ``count`` the section count."""
    head = header if header is not None else json.dumps(parsed.header).encode()
    out = bytearray(MAGIC + struct.pack("<HB", parsed.version, len(parsed.method)) + parsed.method)
    out += struct.pack("<I", len(head)) + head + struct.pack("<I", crc(head))
    table = bytearray(struct.pack("<H", len(parsed.sections) if count is None else count))
    blob = b"".join(payload for _, payload in parsed.sections)
    offset = 0
    listed = parsed.sections if count is None else parsed.sections[:count]  # a smaller count lists fewer
    for i, (name, payload) in enumerate(listed):
        size = len(payload) if sizes is None else sizes[i]
        # the CRC of the bytes a reader takes for the section, so that a lying length passes the check
        table += struct.pack("<B", len(name)) + name + struct.pack("<QI", size, crc(blob[offset:offset + size]))
        offset += size
    out += table + struct.pack("<I", crc(bytes(table)))
    for _, payload in parsed.sections:
        out += payload
    return bytes(out)


# -- corruptions ---------------------------------------------------------------------------------------
@dataclass
class Case:
    kind: str
    what: str
    data: bytes
    must_fail: bool


def edit_bytes(rng: random.Random, data: bytes, focus_head: int = 0) -> tuple[bytes, str]:
    """One random edit of a byte string; ``focus_head`` > 0 puts half the edits in its first bytes."""
    out = bytearray(data)
    n = len(out)

    def position() -> int:
        if focus_head and rng.random() < 0.5:
            return rng.randrange(min(focus_head, max(n, 1)))
        return rng.randrange(max(n, 1))

    op = rng.choice(["flip", "flip", "flips", "truncate", "insert", "delete", "overwrite", "append", "zero"])
    if n == 0:
        op = "append"
    if op == "flip":
        i = position()
        out[i] ^= rng.randrange(1, 256)
        return bytes(out), f"flip byte {i}"
    if op == "flips":
        spots = sorted({position() for _ in range(rng.randrange(2, 6))})
        for i in spots:
            out[i] ^= rng.randrange(1, 256)
        return bytes(out), f"flip bytes {spots}"
    if op == "truncate":
        i = rng.randrange(n)
        return bytes(out[:i]), f"truncate to {i} bytes"
    if op == "insert":
        i, k = position(), rng.randrange(1, 17)
        out[i:i] = bytes(rng.randrange(256) for _ in range(k))
        return bytes(out), f"insert {k} bytes at {i}"
    if op == "delete":
        i, k = position(), rng.randrange(1, 65)
        del out[i:i + k]
        return bytes(out), f"delete {k} bytes at {i}"
    if op == "overwrite":
        i, k = position(), rng.randrange(1, 33)
        out[i:i + k] = bytes(rng.randrange(256) for _ in range(len(out[i:i + k])))
        return bytes(out), f"overwrite {k} bytes at {i}"
    if op == "zero":
        i, k = position(), rng.randrange(1, 257)
        out[i:i + k] = bytes(len(out[i:i + k]))
        return bytes(out), f"zero {k} bytes at {i}"
    k = rng.randrange(1, 65)
    return bytes(out) + bytes(rng.randrange(256) for _ in range(k)), f"append {k} bytes"


def hostile_value(rng: random.Random):
    return rng.choice([
        -1, 0, 1, 2**31, 2**32 + 1, 2**63, 2**64 + 7, -(2**63), 10**30, 1e308, -1e308, 1e-320, 0.5, -0.0,
        float("nan"), float("inf"), float("-inf"), "", "x" * 1000, "\u0000", True, False, None, [], {},
        [1.0] * 1000, {"a": {"b": {"c": []}}}, nested(rng.randrange(50, 400)), [[0, 0, 0]] * 3,
    ])


def nested(depth: int):
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def json_paths(value, prefix=()):
    """Every (path, container) position of a JSON value, depth first."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, prefix + (key,))
    elif isinstance(value, list) and len(value) <= 8:
        for i, item in enumerate(value):
            paths += json_paths(item, prefix + (i,))
    return paths


def get_path(value, path):
    for key in path:
        value = value[key]
    return value


def set_path(root, path, new):
    if not path:
        return new
    get_path(root, path[:-1])[path[-1]] = new
    return root


def header_case(rng: random.Random, parsed: Parsed) -> tuple[Parsed, str]:
    header = json.loads(json.dumps(parsed.header))
    paths = [p for p in json_paths(header) if p]
    path = rng.choice(paths)
    op = rng.random()
    if op < 0.7:
        value = hostile_value(rng)
        header = set_path(header, path, value)
        what = f"header {'.'.join(map(str, path))} = {json.dumps(value)[:40]}"
    elif op < 0.85:
        parent = get_path(header, path[:-1])
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            del parent[path[-1]]
        what = f"header delete {'.'.join(map(str, path))}"
    else:
        parent = get_path(header, path[:-1])
        target = parent if isinstance(parent, dict) else header
        key = rng.choice(["extra", "num_anchors2", "model_", "x" * 40])
        target[key] = hostile_value(rng)
        what = f"header add {key}"
    return Parsed(parsed.version, parsed.method, header, parsed.sections), what


def structure_case(rng: random.Random, parsed: Parsed) -> tuple[Parsed, str]:
    sections = list(parsed.sections)
    op = rng.choice(["reorder", "duplicate", "drop", "rename", "swap", "add", "empty-name-table"])
    if op == "reorder" and len(sections) > 1:
        order = list(range(len(sections)))
        while order == sorted(order):
            rng.shuffle(order)
        sections = [sections[i] for i in order]
        what = f"sections reordered {order}"
    elif op == "duplicate":
        i = rng.randrange(len(sections))
        sections.insert(rng.randrange(len(sections) + 1), sections[i])
        what = f"section {sections[i][0]!r} duplicated"
    elif op == "drop":
        i = rng.randrange(len(sections))
        what = f"section {sections[i][0]!r} dropped"
        del sections[i]
    elif op == "rename":
        i = rng.randrange(len(sections))
        new = rng.choice([b"hash", b"feat", b"x", b"\xff", sections[i][0].upper(), b"a" * 32])
        what = f"section {sections[i][0]!r} renamed {new!r}"
        sections[i] = (new, sections[i][1])
    elif op == "swap" and len(sections) > 1:
        i, j = rng.sample(range(len(sections)), 2)
        sections[i], sections[j] = (sections[i][0], sections[j][1]), (sections[j][0], sections[i][1])
        what = f"payloads of {sections[i][0]!r} and {sections[j][0]!r} swapped"
    elif op == "add":
        sections.insert(rng.randrange(len(sections) + 1), (b"extra", bytes(rng.randrange(256) for _ in range(40))))
        what = "extra section added"
    else:
        sections = []
        what = "no sections"
    return Parsed(parsed.version, parsed.method, parsed.header, sections), what


def crafted_cases(parsed: Parsed) -> list[tuple[str, bytes]]:
    """Files with valid CRCs a decoder must refuse, whatever the method."""
    h = parsed.header
    out = [
        ("header nested 100,000 levels", build(parsed, header=b"[" * 100_000 + b"]" * 100_000)),
        ("header object nested 100,000 levels", build(parsed, header=b'{"a":' * 100_000 + b"1" + b"}" * 100_000)),
        ("model config nested 50,000 levels",
         build(parsed, header=json.dumps({**h, "model": "@"}).encode().replace(b'"@"', b"[" * 50_000 + b"]" * 50_000))),
        ("header 1 MiB of spaces", build(parsed, header=b" " * (1 << 20) + b"{}")),
        ("header over the length limit", build(parsed, header=json.dumps({**h, "pad": "x" * (1 << 20)}).encode())),
        ("header not UTF-8", build(parsed, header=b'{"model": "\xff\xfe"}')),
        ("header a list", build(parsed, header=b"[]")),
        ("header with NaN model values",
         build(parsed, header=json.dumps({**h, "model": {**h["model"], "lambda_dssim": float("nan")}}).encode())),
        ("section length 2^64-1", build(parsed, sizes=[2**64 - 1] + [len(p) for _, p in parsed.sections[1:]])),
        ("section length one too many", build(parsed, sizes=[len(p) + 1 for _, p in parsed.sections])),
        ("section count 65535", build(parsed, count=65535)),
        ("section count 0", build(parsed, count=0)),
        ("sections reversed", build(Parsed(parsed.version, parsed.method, h, parsed.sections[::-1]))),
    ]
    for key, value in (("num_anchors", 2**24 + 1), ("num_anchors", 2**40), ("num_anchors", 10**6),
                       ("num_anchors", -1), ("extent", -1.0), ("voxel_size", 0.0), ("chunk_anchors", 2**16 + 1),
                       ("chunk_anchors", 0)):
        if key in h:
            out.append((f"header {key} = {value:g}", build(Parsed(parsed.version, parsed.method, {**h, key: value},
                                                                parsed.sections))))
    model = h["model"]
    for key, value in (("feat_dim", 4096), ("n_offsets", 64), ("feat_dim", 4097), ("n_offsets", 0)):
        shaped = {**h, "model": {**model, key: value}}
        out.append((f"model {key} = {value}", build(Parsed(parsed.version, parsed.method, shaped, parsed.sections))))
    for group in ("context", "sfp"):
        if group in model:
            for key, value in (("log2_grid", 24), ("log2_plane", 24), ("features_per_level", 64)):
                shaped = {**h, "model": {**model, group: {**model[group], key: value}}}
                out.append((f"model {group}.{key} = {value}",
                            build(Parsed(parsed.version, parsed.method, shaped, parsed.sections))))
    huge = {**h, "model": {**model, "feat_dim": 4096, "n_offsets": 64}}
    if "num_anchors" in h:
        huge["num_anchors"] = 2**24
    out.append(("huge shapes: 2^24 anchors x 4096 features x 64 offsets",
                build(Parsed(parsed.version, parsed.method, huge, parsed.sections))))
    return out


def make_case(method: str, data: bytes, parsed: Parsed, crafted: list, index: int) -> Case:
    if index < len(crafted):
        what, corrupt = crafted[index]
        return Case("crafted", what, corrupt, True)
    rng = random.Random(f"{method}:{index}")
    roll = rng.random()
    if roll < 0.35:
        corrupt, what = edit_bytes(rng, data, focus_head=len(data) - sum(len(p) for _, p in parsed.sections))
        return Case("bytes", what, corrupt, corrupt != data)
    if roll < 0.7:
        i = rng.randrange(len(parsed.sections))
        name, payload = parsed.sections[i]
        new_payload, what = edit_bytes(rng, payload, focus_head=16)
        sections = list(parsed.sections)
        sections[i] = (name, new_payload)
        return Case("section", f"{name.decode()}: {what}",
                    build(Parsed(parsed.version, parsed.method, parsed.header, sections)), False)
    if roll < 0.9:
        if rng.random() < 0.1:  # extreme but valid numbers: the decoder may accept them, must not crash
            key = rng.choice([k for k in ("extent", "voxel_size", "num_anchors", "chunk_anchors") if k in parsed.header])
            value = rng.choice([1e308, 1e-300, 5e-324, 2**24, 1, 2**16])
            edited = Parsed(parsed.version, parsed.method, {**parsed.header, key: value}, parsed.sections)
            return Case("header", f"header {key} = {value:g}", build(edited), False)
        edited, what = header_case(rng, parsed)
        return Case("header", what, build(edited), False)
    edited, what = structure_case(rng, parsed)
    # The section list must be the method's; swapped payloads are checked by their decoders only (two
    # sections of one format and size, e.g. Predict-GS's two hash tables, swap into another valid model).
    must_fail = [n for n, _ in edited.sections] != [n for n, _ in parsed.sections]
    return Case("structure", what, build(edited), must_fail)


# -- running ---------------------------------------------------------------------------------------------
class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout()


def _vm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def decode_outcome(data: bytes) -> tuple[str, str, float]:
    """('refused' | 'decoded' | 'error' | 'timeout', detail, seconds) of decoding ``data``."""
    from predictgs.pipeline.codec import decode_model

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    start = time.perf_counter()
    try:
        decode_model(data)
        return "decoded", "", time.perf_counter() - start
    except BitstreamError as err:
        message = str(err)
        if "\n" in message:
            return "error", f"BitstreamError over several lines: {message[:200]!r}", time.perf_counter() - start
        return "refused", message, time.perf_counter() - start
    except CaseTimeout:
        return "timeout", f"longer than {CASE_SECONDS} s", time.perf_counter() - start
    except Exception as err:  # noqa: BLE001 - any other exception is the failure being looked for
        return "error", f"{type(err).__name__}: {str(err)[:200]}", time.perf_counter() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def address_space_cap():
    """Cap the process's address space at its size now + MEMORY_LIMIT_BYTES while the fuzz runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + MEMORY_LIMIT_BYTES
    if hard != resource.RLIM_INFINITY and cap > hard:
        cap = hard
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    yield cap
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def fuzz(method: str, cases: int) -> tuple[list[str], Counter, float]:
    """(failures, outcome counts per kind, seconds) of ``cases`` corruptions of the method's tiny file."""
    from predictgs.codec.arithmetic import warm_up
    from predictgs.pipeline.codec import decode_model, encode_model

    warm_up()  # the coder's tables, built before any timing
    data = encode_model(tiny_model(method)).data
    decode_model(data)  # the intact file decodes
    parsed = parse(data)
    crafted = crafted_cases(parsed)
    failures, counts = [], Counter()
    start = time.perf_counter()
    for index in range(cases):
        case = make_case(method, data, parsed, crafted, index)
        outcome, detail, seconds = decode_outcome(case.data)
        counts[(case.kind, outcome)] += 1
        if outcome == "decoded" and case.must_fail:
            failures.append(f"{method} case {index} ({case.kind}: {case.what}): decoded without an error")
        elif outcome in ("error", "timeout"):
            failures.append(f"{method} case {index} ({case.kind}: {case.what}): {detail}")
        elif seconds > CASE_SECONDS:
            failures.append(f"{method} case {index} ({case.kind}: {case.what}): took {seconds:.1f} s")
    return failures, counts, time.perf_counter() - start


@pytest.mark.parametrize("method", method_names())
def test_corrupt_files_raise_bitstream_errors_only(method, address_space_cap):
    failures, counts, seconds = fuzz(method, FUZZ_CASES)
    summary = ", ".join(f"{kind}/{outcome} {n}" for (kind, outcome), n in sorted(counts.items()))
    print(f"\n{method}: {FUZZ_CASES} cases in {seconds:.1f} s: {summary}")
    assert sum(counts.values()) == FUZZ_CASES
    assert not failures, f"{len(failures)} of {FUZZ_CASES} cases failed:\n" + "\n".join(failures[:20])


def test_the_corruptions_are_deterministic():
    data = b"\x00" * 64 + bytes(range(256))
    first = [edit_bytes(random.Random(f"x:{i}"), data, focus_head=32) for i in range(50)]
    again = [edit_bytes(random.Random(f"x:{i}"), data, focus_head=32) for i in range(50)]
    assert first == again
    assert len({d for d, _ in first}) > 40


def test_every_crafted_file_has_valid_checksums():
    """The crafted files reach past the CRCs (or they would test nothing but the checksum)."""
    from predictgs.codec.container import read_container
    from predictgs.errors import BitstreamError as Refused

    parsed = parse(_tiny_scaffold_file())
    for what, data in crafted_cases(parsed):
        try:
            read_container(data, {parsed.method.decode()})
        except Refused as err:
            assert "CRC" not in str(err), f"{what}: {err}"


def _tiny_scaffold_file() -> bytes:
    from predictgs.pipeline.codec import encode_model

    return encode_model(tiny_model("scaffold")).data


if __name__ == "__main__":  # pragma: no cover - `python tests/test_fuzz.py [cases]` prints the counts
    import sys

    total = int(sys.argv[1]) if len(sys.argv) > 1 else FUZZ_CASES
    all_failures = []
    for name in method_names():
        found, tally, took = fuzz(name, total)
        all_failures += found
        print(f"{name}: {total} cases, {len(found)} failures, {took:.1f} s; "
              + ", ".join(f"{k}/{o} {n}" for (k, o), n in sorted(tally.items())), flush=True)
    print("\n".join(all_failures[:50]))
    sys.exit(1 if all_failures else 0)
