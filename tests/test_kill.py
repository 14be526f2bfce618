"""Killed at any moment, nothing is left half-written: ``predictgs train``, ``encode``, ``decode`` and
``eval`` are stopped with SIGKILL at random (seeded) moments and started again; the results must equal
those of an uninterrupted run (CPU training is bit-reproducible across resumption, encoding and decoding
are deterministic), and after every kill each file present must be whole (JSON that parses, a checkpoint
that loads, a bitstream identical to the reference one, a decoded folder that is the previous model's or
the new one's). The lock a killed command leaves is taken over by the rerun.

Plus the helper every write goes through (:mod:`predictgs.io`): atomic replacement, modes, refusals.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from predictgs.errors import ConfigError
from predictgs.io import check_output_dir, check_output_file, write_atomic, write_json

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 60
KILL_SEED = 20240611
TRAIN_KILLS = 3
ENCODE_KILLS = 2
# Entries that measure time (or name the output path) differ between any two runs.
VOLATILE = {"train_seconds", "encode_seconds", "decode_seconds", "bitstream"}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "predictgs.cli", *map(str, args)]


def _run(command: list[str], log: Path) -> float:
    """Run to completion (exit 0); returns the wall time."""
    start = time.perf_counter()
    with open(log, "ab") as out:
        result = subprocess.run(command, env=_env(), stdout=out, stderr=out, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{log.read_text()[-3000:]}"
    return time.perf_counter() - start


def _kill_at(command: list[str], delay: float, log: Path, started=None) -> bool:
    """Start ``command`` and SIGKILL it ``delay`` seconds after ``started()`` becomes true (at once when
    None); False if it finished first."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=_env(), stdout=out, stderr=out)
        try:
            while started is not None and not started() and process.poll() is None:
                time.sleep(0.01)
            process.wait(timeout=delay)
            assert process.returncode == 0, log.read_text()[-3000:]
            return False
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True


def _appears(path: Path):
    """True once the file exists (it did not when this was called)."""
    assert not path.exists()
    return path.exists


def _log_grows(path: Path):
    """True once the file is longer than now: the trainer has started (it logs a new or resumed run)."""
    size = path.stat().st_size if path.exists() else -1
    return lambda: path.exists() and path.stat().st_size > size


# -- comparisons ------------------------------------------------------------------------------------------
def _json(path: Path):
    return json.loads(path.read_text())


def _stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def _assert_same_state(a, b, where="checkpoint"):
    """Equal tensors (bit for bit) and values, recursively; timings skipped."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, set(a) ^ set(b)))}"
        for key in a:
            if key not in VOLATILE:
                _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _files_are_whole(run_dir: Path, reference_pgs: Path | None = None, pgs: Path | None = None) -> None:
    """What a kill may leave: files from before, whole new ones, harmless .tmp-* leftovers; never half a file."""
    from predictgs.runs import load_checkpoint

    for path in run_dir.glob("*.json"):
        _json(path)  # parses
    if (run_dir / "checkpoint.pt").exists():
        load_checkpoint(run_dir / "checkpoint.pt")
    if (run_dir / "config.yaml").exists():
        from predictgs.config import load_yaml

        load_yaml(run_dir / "config.yaml")
    if pgs is not None and pgs.exists():
        assert pgs.read_bytes() == reference_pgs.read_bytes(), "a killed encode left a different bitstream"


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A scene, a config, an uninterrupted training run and its encoding (with their wall times)."""
    from predictgs.data.synth import generate_scene

    root = tmp_path_factory.mktemp("kill")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=8, num_points=300)
    config = root / "config.yaml"
    config.write_text("train:\n  lpips: false\n  checkpoints: 6\nmodel:\n  feat_dim: 16\n  n_offsets: 5\n")
    train = ["train", "--method", "scaffold", "--scene", scene, "--iterations", ITERATIONS, "--config", config,
             "--device", "cpu", "--quiet", "--out"]
    trained = root / "trained"
    _run(_cli(*train, trained), root / "log.txt")
    train_seconds = json.loads((trained / "metrics.json").read_text())["train_seconds"]
    encoded = root / "encoded"
    shutil.copytree(trained, encoded)
    encode_seconds = _run(_cli("encode", encoded, "-o", root / "ref.pgs", "--device", "cpu"), root / "log.txt")
    return {"root": root, "scene": scene, "train": train, "trained": trained, "train_seconds": train_seconds, "encoded": encoded,
            "pgs": root / "ref.pgs", "encode_seconds": encode_seconds}


# -- the kill tests -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(reference, tmp_path):
    from predictgs.runs import load_checkpoint

    rng = random.Random(KILL_SEED)
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    command = _cli(*reference["train"], run_dir)
    interrupted = []  # iterations of the checkpoints the killed runs left
    for kill in range(TRAIN_KILLS):
        if kill == 0:
            # once, just after the first checkpoint: a kill that surely lands mid-training, however fast the
            # training runs on this machine (random moments alone landed before the first checkpoint and
            # after the last one on a fast, loaded machine)
            delay = rng.uniform(0.0, 0.05) * reference["train_seconds"]
            started = _appears(run_dir / "checkpoint.pt")
        else:  # a moment within the training loop: after the trainer logged its start, before its end
            delay = rng.uniform(0.05, 0.9) * reference["train_seconds"]
            started = _log_grows(run_dir / "train.log")
        if _kill_at(command, delay, log, started=started):
            checkpoint = run_dir / "checkpoint.pt"
            interrupted.append(load_checkpoint(checkpoint)["iteration"] if checkpoint.exists() else 0)
        if run_dir.exists():
            _files_are_whole(run_dir)
    _run(command, log)
    print(f"\ntraining killed {len(interrupted)} times; checkpoints left at iterations {interrupted}")
    assert any(0 < it < ITERATIONS for it in interrupted), f"no kill landed mid-training: {interrupted}"
    ref = reference["trained"]
    assert _stable(_json(run_dir / "metrics.json")) == _stable(_json(ref / "metrics.json"))
    assert _json(run_dir / "per_view.json") == _json(ref / "per_view.json")
    _assert_same_state(load_checkpoint(run_dir / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt"))


@pytest.mark.slow
def test_killed_encoding_reruns_to_the_uninterrupted_result(reference, tmp_path):
    rng = random.Random(KILL_SEED + 1)
    run_dir, pgs, log = tmp_path / "run", tmp_path / "x.pgs", tmp_path / "log.txt"
    shutil.copytree(reference["trained"], run_dir)
    before = _json(run_dir / "metrics.json")
    after = _json(reference["encoded"] / "metrics.json")
    command = _cli("encode", run_dir, "-o", pgs, "--device", "cpu")
    kills = []  # what each kill left: whether the bitstream and the new metrics were already written
    # the first kill comes as soon as the bitstream is there (while the encoder decodes and evaluates it,
    # before metrics.json is rewritten); the others at random moments
    moments = [(0.0, pgs.exists)] + [(rng.uniform(0.1, 0.9) * reference["encode_seconds"], None)
                                     for _ in range(ENCODE_KILLS - 1)]
    for delay, started in moments:
        if _kill_at(command, delay, log, started=started):
            kills.append((pgs.exists(), _stable(_json(run_dir / "metrics.json")) == _stable(after)))
        _files_are_whole(run_dir, reference["pgs"], pgs)
        assert _stable(_json(run_dir / "metrics.json")) in (_stable(before), _stable(after))
    _run(command, log)
    print(f"\nencoding killed {len(kills)} times; (bitstream written, metrics updated) at each kill: {kills}")
    assert kills, "no kill landed before the encoding finished"
    assert pgs.read_bytes() == reference["pgs"].read_bytes()
    assert _stable(_json(run_dir / "metrics.json")) == _stable(after)
    assert _json(run_dir / "per_view_decoded.json") == _json(reference["encoded"] / "per_view_decoded.json")


# -- decode and eval ---------------------------------------------------------------------------------------
DECODE_KILLS = 3
EVAL_KILLS = 3
EVAL_VOLATILE = {"fps", "fps_frames", "frame_ms_median", "frame_ms_mean", "fps_seconds"}


@pytest.fixture(scope="module")
def decoded_reference(reference):
    """Two decoded folders of the run: ``new`` from the reference bitstream (uninterrupted, evaluated) and
    ``old`` from a float16 encoding (another model, evaluated: the folder a decode replaces)."""
    root, log = reference["root"], reference["root"] / "log.txt"
    evaluate = ["--scene", reference["scene"], "--device", "cpu", "--no-lpips", "--fps-seconds", "0.3"]
    new = root / "decoded_new"
    decode_seconds = _run(_cli("decode", reference["pgs"], "-o", new), log)
    eval_seconds = _run(_cli("eval", new, *evaluate), log)
    fp16_run = root / "fp16_run"
    shutil.copytree(reference["trained"], fp16_run)
    _run(_cli("encode", fp16_run, "-o", root / "fp16.pgs", "--no-eval", "--mlp-precision", "fp16"), log)
    old = root / "decoded_old"
    _run(_cli("decode", root / "fp16.pgs", "-o", old), log)
    _run(_cli("eval", old, *evaluate), log)
    return {"new": new, "old": old, "evaluate": evaluate, "decode_seconds": decode_seconds,
            "eval_seconds": eval_seconds}


def _decoded_state(folder: Path) -> dict:
    return torch.load(folder / "model.pt", map_location="cpu", weights_only=True)


def _staging_exists(target: Path):
    return lambda: any(target.parent.glob(f".{target.name}.tmp-*"))


@pytest.mark.slow
def test_killed_decoding_leaves_the_old_folder_or_the_new_one(reference, decoded_reference, tmp_path):
    """decode replaces a decoded folder whole: killed at any moment, the folder is the previous model's (with
    its evaluation) or the new one's (without the previous evaluation), never a mix; a rerun completes it."""
    rng = random.Random(KILL_SEED + 2)
    target, log = tmp_path / "decoded", tmp_path / "log.txt"
    shutil.copytree(decoded_reference["old"], target)
    old_state, new_state = _decoded_state(decoded_reference["old"]), _decoded_state(decoded_reference["new"])
    command = _cli("decode", reference["pgs"], "-o", target)
    moments = [(0.0, _staging_exists(target))] + [(rng.uniform(0.2, 1.0) * decoded_reference["decode_seconds"], None)
                                                   for _ in range(DECODE_KILLS - 1)]
    seen = []
    for delay, started in moments:
        if _kill_at(command, delay, log, started=started):
            state = _decoded_state(target)
            if (target / "metrics.json").exists():  # the previous folder, whole
                _assert_same_state(state, old_state, "old model.pt")
                _json(target / "metrics.json")
                seen.append("old")
            else:
                _assert_same_state(state, new_state, "new model.pt")
                seen.append("new")
    _run(command, log)
    print(f"\ndecoding killed {len(seen)} times; the folder held at each kill: {seen}")
    assert seen, "no kill landed before the decoding finished"
    _assert_same_state(_decoded_state(target), new_state, "model.pt")
    assert not (target / "metrics.json").exists() and not (target / "per_view.json").exists()
    assert not list(tmp_path.glob(".decoded.tmp-*")), "a killed decode's staging folder was left behind"


@pytest.mark.slow
def test_killed_evaluation_reruns_to_the_uninterrupted_result(decoded_reference, tmp_path):
    rng = random.Random(KILL_SEED + 3)
    target, log = tmp_path / "decoded", tmp_path / "log.txt"
    shutil.copytree(decoded_reference["new"], target)
    for name in ("metrics.json", "per_view.json"):
        (target / name).unlink()
    command = _cli("eval", target, *decoded_reference["evaluate"])
    kills = 0
    for _ in range(EVAL_KILLS):
        if _kill_at(command, rng.uniform(0.2, 0.95) * decoded_reference["eval_seconds"], log):
            kills += 1
            for name in ("metrics.json", "per_view.json"):
                if (target / name).exists():
                    _json(target / name)  # whole
            if (target / ".predictgs.lock").exists() and (target / ".predictgs.lock").read_text().strip():
                assert json.loads((target / ".predictgs.lock").read_text())["command"].startswith("predictgs eval")
    _run(command, log)  # takes over a lock the killed evaluation left
    print(f"\nevaluation killed {kills} times")
    assert kills, "no kill landed before the evaluation finished"
    expected = _json(decoded_reference["new"] / "metrics.json")
    got = _json(target / "metrics.json")
    assert {k: v for k, v in got.items() if k not in EVAL_VOLATILE} == \
        {k: v for k, v in expected.items() if k not in EVAL_VOLATILE}
    assert _json(target / "per_view.json") == _json(decoded_reference["new"] / "per_view.json")
    assert not (target / ".predictgs.lock").read_text().strip(), "the lock was not released"


# -- the write helper ------------------------------------------------------------------------------------
def test_write_atomic_replaces_whole_files_only(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "sub" / "a.json", "old")
    assert path.read_text() == "old"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, "a new file gets the mode open() would give it"

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"], "no temporary file left behind"
    path.chmod(0o640)
    write_json(path, {"x": 1})
    assert _json(path) == {"x": 1} and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_write_atomic_refuses_what_is_not_a_regular_file(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        write_atomic(tmp_path / "folder", "x")
    os.symlink("/dev/null", tmp_path / "null")
    with pytest.raises(ConfigError, match="not a regular file"):
        write_atomic(tmp_path / "null", "x")
    assert Path("/dev/null").is_char_device()
    target = write_atomic(tmp_path / "target.txt", "a")
    os.symlink(target, tmp_path / "link.txt")
    write_atomic(tmp_path / "link.txt", "b")  # through the link: the link stays, the target changes
    assert (tmp_path / "link.txt").is_symlink() and target.read_text() == "b"


def test_output_checks_create_nothing(tmp_path):
    check_output_dir(tmp_path / "a" / "b", "--out")
    check_output_file(tmp_path / "c" / "x.pgs", "--output")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out .*file is a file"):
        check_output_dir(tmp_path / "file" / "run", "--out")
    with pytest.raises(ConfigError, match="--output .* is a folder"):
        check_output_file(tmp_path, "--output")
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output_file("/dev/null", "--output")
