"""The codec: exact round trips for Scaffold-GS, HAC and Predict-GS, determinism, coded size against the
entropy model, the commands, and refusal of corrupt or foreign input (including a fuzz test)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baselines.hac import HACConfig
from predictgs.cli import main
from predictgs.codec.container import MAGIC, Container, read_container, write_container
from predictgs.data.synth import generate_scene
from predictgs.entropy.anchor import ContextConfig
from predictgs.errors import BitstreamError
from predictgs.methods.predict_gs import SFPConfig
from predictgs.methods.synthetic import random_hac
from predictgs.pipeline.codec import (check_round_trip, coding_report, decode_model, encode_model, load_decoded,
                                      save_decoded)
from predictgs.pipeline.train import load_run, run_training

from predictgs import kernels

CPU_RASTERIZER = "compiled" if kernels.available() else "reference"  # what auto takes on the CPU

pytestmark = pytest.mark.slow

ITERATIONS = 80
SMALL_GRIDS = {"log2_grid": 9, "log2_plane": 9}
ENTROPY_SCHEDULE = {"curriculum": {"noise_from": 0.1, "entropy_from": 0.2, "bbox_update_at": 0.2}}
CONFIGS = {
    "scaffold": {"train": {"lpips": False}},
    "hac": {"train": {"lpips": False}, "model": {**ENTROPY_SCHEDULE, "context": SMALL_GRIDS}},
    "predictgs": {"train": {"lpips": False},
                  "model": {**ENTROPY_SCHEDULE, "context": SMALL_GRIDS, "sfp": SMALL_GRIDS}},
}
METHODS = list(CONFIGS)
# Streams smaller than this are dominated by fixed costs (probability, lengths, coder flush bytes).
MEANINGFUL_STREAM_BYTES = 2000


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("codec_scene") / "object"
    generate_scene("object", 0, path, width=40, height=30, num_views=9, num_points=300)  # 2 test views
    return path


@pytest.fixture(scope="module")
def runs(scene, tmp_path_factory):
    """One short trained run per method: method -> run directory (treat as read-only; copy to modify)."""
    root = tmp_path_factory.mktemp("codec_runs")
    out = {}
    for method, config in CONFIGS.items():
        config_path = root / f"{method}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        run_training(method, scene, root / method, iterations=ITERATIONS, config_file=config_path, progress=False)
        out[method] = root / method
    return out


@pytest.fixture(scope="module")
def encoded(runs):
    """method -> (model, spec, EncodedModel)."""
    out = {}
    for method, run_dir in runs.items():
        spec, model = load_run(run_dir)
        out[method] = (model, spec, encode_model(model))
    return out


@pytest.fixture(scope="module")
def hac_file(encoded) -> bytes:
    return encoded["hac"][2].data


@pytest.fixture(scope="module")
def tiny_file() -> bytes:
    """A small untrained HAC model (random parameters, values drawn from its own entropy model): cheap
    to decode, for the fuzz test whose corruptions pass the CRC checks."""
    config = HACConfig(feat_dim=8, n_offsets=4, context=ContextConfig(log2_grid=6, log2_plane=6, hidden_dim=16))
    model = random_hac(200, seed=1, config=config)
    return encode_model(model).data


# -- exact round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["hac", "predictgs"])
def test_decoded_model_is_the_test_time_model(encoded, method):
    """The file decodes to exactly what the trained model renders at test time."""
    model, _, result = encoded[method]
    decoded = decode_model(result.data).model
    assert type(decoded) is type(model) and not decoded.training
    expected, got = model.test_state(), decoded.cached_test_state()
    assert expected.keys() == got.keys() >= {"positions", "attributes", "scaling", "offsets", "masks"}
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    check_round_trip(model, decoded)
    # ... and those are HAC's test-time values: kept anchors, 16-bit positions, rounded with Q.
    coded = model.coded_anchors()
    assert torch.equal(got["positions"], model.anchor_positions()[coded.rows])
    assert coded.rows.shape[0] == model.kept_anchor_count() == decoded.anchors.num_anchors
    assert torch.equal(got["masks"].bool(), model.anchors.mask_hard(model.config.mask_threshold)[coded.rows] > 0)
    steps = model.context.distributions(model.bounds.normalise(got["positions"])).step
    attributes = got["attributes"] / steps[model.attribute_group]
    assert torch.allclose(attributes, attributes.round(), atol=1e-3)  # multiples of the step
    for name, tensor in model.state_dict().items():
        if not name.startswith("anchors.") and ".encoding." not in name:
            assert torch.equal(decoded.state_dict()[name], tensor), name
    for encoding in ("context.encoding", "sfp.encoding"):
        ours = [t for n, t in model.state_dict().items() if n.startswith(encoding)]
        theirs = [t for n, t in decoded.state_dict().items() if n.startswith(encoding)]
        assert all(torch.equal(torch.where(a >= 0, 1.0, -1.0), b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("variant", ["predictgs_sfp_only", "predictgs_no_pt", "predictgs_no_pt_one_stage"])
def test_predictgs_variants_round_trip(variant):
    """The ablation variants (residual_dim 0; no progressive training), on small random models."""
    from predictgs.methods import method_class

    cls = method_class(variant)
    small = {"log2_grid": 6, "log2_plane": 6}
    config = cls.config_class(context=ContextConfig(**small), sfp=SFPConfig(**small))
    model = random_hac(300, seed=2, config=config, method_class=cls)
    result = encode_model(model)
    decoded = decode_model(result.data)
    assert type(decoded.model) is cls
    check_round_trip(model, decoded.model)
    assert decoded.model.cached_test_state()["attributes"].shape[1] == config.residual_dim
    if config.residual_dim == 0:
        assert result.section_bytes["residual"] == 0


def test_scaffold_decodes_to_the_trained_tensors(encoded):
    model, _, result = encoded["scaffold"]
    decoded = decode_model(result.data).model
    for name, tensor in model.state_dict().items():
        assert torch.equal(decoded.state_dict()[name], tensor), name


@pytest.mark.parametrize("method", METHODS)
def test_encoding_and_decoding_are_deterministic(encoded, method, tmp_path):
    model, spec, result = encoded[method]
    assert encode_model(model).data == result.data
    for name in ("a", "b"):
        decoded = decode_model(result.data)
        save_decoded(decoded.model, method, tmp_path / name)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    _, loaded = load_decoded(tmp_path / "a")
    check_round_trip(model, loaded)


@pytest.mark.parametrize("method", ["hac", "predictgs"])
def test_coded_bits_match_the_entropy_model(encoded, method):
    """Every arithmetic-coded stream above MEANINGFUL_STREAM_BYTES within 1% of the estimate in
    metrics.json: the entropy model's bits() (the ideal code length under the coder's own probabilities)
    plus the coder's known overhead; the Bernoulli streams' N H(p) + 32."""
    model, _, result = encoded[method]
    coded, gaps = coding_report(model.estimated_bits(), result.section_bytes)
    coded_streams = [s for s in ("feat", "residual", "scaling", "offsets", "hash", "sfp", "masks") if s in coded]
    large = [s for s in coded_streams if result.section_bytes[s] >= MEANINGFUL_STREAM_BYTES]
    assert {"scaling", "offsets", "hash"} <= set(large)
    for stream in large:
        assert abs(gaps[stream]) <= 1.0, (stream, gaps)
    # The same from the entropy model object itself, payload and overhead separately.
    coded_anchors = model.coded_anchors()
    lengths = model.entropy_model().code_lengths(coded_anchors.values, model.bounds.normalise(coded_anchors.positions),
                                                 coded_anchors.centres, model.element_masks(coded_anchors.masks))
    for stream, length in lengths.items():
        size = result.section_bytes[stream]
        if size >= MEANINGFUL_STREAM_BYTES:
            assert abs(size - (length.bits / 8 + length.overhead_bytes)) <= 0.01 * size, (stream, size, length)


def test_coded_bits_within_1_percent_of_the_estimate_when_the_model_fits():
    """A model whose values follow its own entropy model (random parameters, values drawn from the
    predicted Gaussians): every arithmetic-coded stream within 1% of the model's own estimate."""
    config = HACConfig(context=ContextConfig(log2_grid=8, log2_plane=8))
    model = random_hac(3000, seed=3, config=config)
    result = encode_model(model)
    _, gaps = coding_report(model.estimated_bits(), result.section_bytes)
    for stream in ("feat", "scaling", "offsets", "hash", "masks"):
        assert result.section_bytes[stream] >= MEANINGFUL_STREAM_BYTES, stream
        assert abs(gaps[stream]) <= 1.0, (stream, gaps)


# -- the commands --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_encode_decode_eval_commands(runs, scene, method, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs[method], run_dir)
    before = json.loads((run_dir / "metrics.json").read_text())
    bitstream = tmp_path / "scene.pgs"
    assert main(["encode", str(run_dir), "-o", str(bitstream)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["size_bytes"] == bitstream.stat().st_size
    assert sum(metrics["section_bytes"].values()) == metrics["size_bytes"]
    assert metrics["encode_seconds"] > 0 and metrics["decode_seconds"] > 0
    assert metrics["prequant_psnr"] == before["psnr"]
    assert metrics["psnr"] == metrics["decoded_psnr"]
    assert metrics["decoded_psnr"] == metrics["prequant_psnr"]  # the test-time model is the decoded one
    assert set(metrics["coded_bits"]) >= {"anchor", "feat" if method != "predictgs" else "residual", "mlps"}

    # A second encode keeps the pre-encode values.
    assert main(["encode", str(run_dir), "-o", str(bitstream), "--no-eval"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["prequant_psnr"] == before["psnr"]

    decoded_dir = tmp_path / "decoded"
    assert main(["decode", str(bitstream), "-o", str(decoded_dir)]) == 0
    assert main(["eval", str(decoded_dir), "--scene", str(scene), "--no-lpips", "--fps-seconds", "0.2"]) == 0
    capsys.readouterr()
    evaluated = json.loads((decoded_dir / "metrics.json").read_text())
    assert evaluated["psnr"] == pytest.approx(metrics["decoded_psnr"], abs=1e-9)
    assert evaluated["num_anchors"] == metrics["num_anchors_coded"]
    assert evaluated["fps"] > 0 and evaluated["device"] == "cpu"
    assert (decoded_dir / "per_view.json").is_file()
    _, model = load_decoded(decoded_dir)
    assert type(model).name == method
    assert evaluated["rasterizer"] == CPU_RASTERIZER and evaluated["fps_frames"] >= 1


@pytest.mark.parametrize("method", METHODS)
def test_half_precision_mlps_round_trip_exactly_and_halve_their_section(encoded, method):
    model, spec, full = encoded[method]
    trained = [t.clone() for t in model.network_tensors()]
    half = encode_model(model, mlp_precision="fp16")
    assert all(torch.equal(t, u) for t, u in zip(model.network_tensors(), trained))  # the caller's model is kept
    assert half.section_bytes["mlps"] <= 0.55 * full.section_bytes["mlps"]
    decoded = decode_model(half.data).model
    for t, u in zip(decoded.network_tensors(), trained):  # the trained weights rounded to float16, exactly
        assert torch.equal(t, u.half().float())
    check_round_trip(half.source, decoded)  # the per-anchor values are coded with the rounded networks
    with pytest.raises(Exception, match="mlp precision"):
        encode_model(model, mlp_precision="int8")


def test_half_precision_keeps_quality_and_is_recorded(runs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["hac"], run_dir)
    assert main(["encode", str(run_dir), "-o", str(tmp_path / "half.pgs"), "--mlp-precision", "fp16"]) == 0
    capsys.readouterr()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["mlp_precision"] == "fp16"
    assert abs(metrics["decoded_psnr"] - metrics["prequant_psnr"]) < 0.01


def test_weights_outside_the_half_range_are_refused(encoded):
    import copy

    from predictgs.errors import ConfigError

    model, spec, _ = encoded["hac"]
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.network_tensors()[0].view(-1)[0] = 1e6
    with pytest.raises(ConfigError, match="float16 range"):
        encode_model(model, mlp_precision="fp16")


# -- bad input -----------------------------------------------------------------------------------------
def _resealed(data: bytes, edit) -> bytes:
    """The file after ``edit(container)``, written again with valid CRCs."""
    from predictgs.methods import registry

    container = read_container(data, set(registry()))
    edit(container)
    return write_container(container)


def _expect_error(data: bytes, *needles: str) -> str:
    with pytest.raises(BitstreamError) as info:
        decode_model(data)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_wrong_magic_and_foreign_files(hac_file, tmp_path):
    _expect_error(b"", "magic")
    _expect_error(b"\x89PG", "magic", "truncated")
    _expect_error(b"X" + hac_file[1:], "magic")
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + bytes(13) + b"\0\0\0\0"
    _expect_error(png, "magic", "not a predictgs bitstream")
    _expect_error(zlib.compress(hac_file[:1000]), "magic")


def test_unknown_version_and_method(hac_file):
    version = len(MAGIC)
    _expect_error(hac_file[:version] + struct.pack("<H", 7) + hac_file[version + 2:], "version 7")
    # Files of the previous formats (torchac's coder, Morton-only positions) are refused up front, saying
    # what to do, not deep inside a section.
    for old in (2, 3):
        _expect_error(hac_file[:version] + struct.pack("<H", old) + hac_file[version + 2:],
                      f"version {old} ", "encode the run again")
    method_length = hac_file[version + 2]
    start = version + 3
    renamed = hac_file[:start] + b"hbc" + hac_file[start + method_length:]
    _expect_error(renamed, "unknown method 'hbc'")
    other = hac_file[:version + 2] + bytes([5]) + b"bogus" + hac_file[start + method_length:]
    _expect_error(other, "unknown method 'bogus'")


def test_truncated_files_name_the_section(hac_file):
    container = read_container(hac_file, {"hac"})
    end_of_table = len(hac_file) - sum(len(v) for v in container.sections.values())
    _expect_error(hac_file[:12], "truncated")
    _expect_error(hac_file[:40], "header", "truncated")
    _expect_error(hac_file[:end_of_table - 3], "section table", "truncated")
    offset = end_of_table
    for name, payload in container.sections.items():
        cut = offset + len(payload) // 2
        _expect_error(hac_file[:cut], f"section {name!r}", "truncated")
        offset += len(payload)
    _expect_error(hac_file + b"\0", "unexpected bytes")


def test_flipped_bytes_name_the_section(hac_file):
    container = read_container(hac_file, {"hac"})
    offset = len(hac_file) - sum(len(v) for v in container.sections.values())
    for name, payload in container.sections.items():
        position = offset + len(payload) // 2
        corrupt = bytearray(hac_file)
        corrupt[position] ^= 0x10
        _expect_error(bytes(corrupt), f"section {name!r}", "CRC")
        offset += len(payload)
    header_byte = bytearray(hac_file)
    header_byte[len(MAGIC) + 12] ^= 0x01
    _expect_error(bytes(header_byte), "header")


def test_inconsistent_content_with_valid_crcs(hac_file):
    def set_header(key, value):
        def edit(c):
            c.header[key] = value
        return edit

    _expect_error(_resealed(hac_file, set_header("num_anchors", 10**9)), "num_anchors")
    _expect_error(_resealed(hac_file, set_header("num_anchors", 5)), "section 'anchor'")
    _expect_error(_resealed(hac_file, set_header("chunk_anchors", 0)), "chunk_anchors")
    _expect_error(_resealed(hac_file, set_header("bounds", {"lower": [0, 0], "upper": [1, 1]})), "bounds")

    def huge_grid(c):
        c.header["model"]["context"]["log2_grid"] = 40
    _expect_error(_resealed(hac_file, huge_grid), "log2_grid")

    def bad_key(c):
        c.header["model"]["no_such_option"] = 1
    _expect_error(_resealed(hac_file, bad_key), "header", "no_such_option")

    def drop_section(c):
        del c.sections["masks"]
    _expect_error(_resealed(hac_file, drop_section), "section table", "masks")

    def short_mlps(c):
        c.sections["mlps"] = b"\0" + bytes(16)  # stored raw, far too short
    _expect_error(_resealed(hac_file, short_mlps), "section 'mlps'")

    def junk_feat(c):
        c.sections["feat"] = bytes(range(256)) * 4
    _expect_error(_resealed(hac_file, junk_feat), "section 'feat'")


def test_cli_refuses_bad_files_with_one_line(hac_file, tmp_path):
    cases = {"truncated.pgs": hac_file[: len(hac_file) // 2], "flipped.pgs": hac_file[:-5] + b"XXXXX",
             "image.png": b"\x89PNG\r\n\x1a\n" + bytes(64)}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = subprocess.run([sys.executable, "-m", "predictgs.cli", "decode", str(path), "-o",
                                 str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("predictgs decode: error:")
    result = subprocess.run([sys.executable, "-m", "predictgs.cli", "decode", str(tmp_path / "missing.pgs"), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_commands_refuse_other_directories(tmp_path, capsys):
    assert main(["encode", str(tmp_path), "-o", str(tmp_path / "x.pgs")]) == 2
    assert main(["eval", str(tmp_path), "--scene", str(tmp_path)]) == 2
    (tmp_path / "model.pt").write_bytes(b"not a model")
    (tmp_path / "config.yaml").write_text("method: hac\n")
    assert main(["eval", str(tmp_path), "--scene", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("predictgs ") for line in errors)


# -- fuzz ------------------------------------------------------------------------------------------------
_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**9), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**9), st.integers(1, 64)),
)


def _apply(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        i = position % len(out)
        if kind == "flip":
            out[i] ^= value
        elif kind == "truncate":
            del out[i:]
        elif kind == "insert":
            out[i:i] = bytes([value])
        else:
            del out[i:i + value]
    return bytes(out)


@settings(max_examples=250, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(_edit, min_size=1, max_size=3))
def test_fuzz_random_corruptions_raise_bitstream_errors_only(hac_file, edits):
    corrupt = _apply(hac_file, edits)
    try:
        decode_model(corrupt)
    except BitstreamError:
        return
    assert corrupt == hac_file, "a corrupt file decoded without an error"


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(section=st.sampled_from(["anchor", "masks", "hash", "feat", "scaling", "offsets", "mlps"]),
       edits=st.lists(_edit, min_size=1, max_size=3))
def test_fuzz_resealed_corruptions_raise_bitstream_errors_only(tiny_file, section, edits):
    """Corruptions that the CRCs cannot catch (the file is resealed): the section decoders themselves
    must either decode something or raise a BitstreamError."""
    def edit(container: Container):
        container.sections[section] = _apply(container.sections[section], edits)

    try:
        decode_model(_resealed(tiny_file, edit))
    except BitstreamError:
        pass
