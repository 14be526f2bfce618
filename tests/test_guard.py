"""Folder kinds, writer locks and whole-folder replacement (predictgs/guard.py), and the commands that use
them: two writers of one run, the workflow's sequence of commands on one run folder, run folders of
earlier versions (no marker)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from predictgs import guard
from predictgs.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "predictgs.cli", *map(str, args)]


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from predictgs.data.synth import generate_scene

    root = tmp_path_factory.mktemp("guard")
    generate_scene("object", 0, root / "scene", width=40, height=30, num_views=8, num_points=200)
    (root / "config.yaml").write_text("train:\n  lpips: false\n  checkpoints: 2\n")
    return root / "scene"


# -- kinds -------------------------------------------------------------------------------------------------
def test_folder_kinds_from_markers_and_from_files(tmp_path, scene):
    assert guard.folder_kind(scene) == "scene"
    assert guard.read_marker(scene) is None  # generate_scene alone writes no marker; `predictgs synth` does
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: hac\n")
    (run / "checkpoint.pt").write_bytes(b"x")
    assert guard.folder_kind(run) == "run"  # a run folder of an earlier version: recognised by its files
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    (decoded / "config.yaml").write_text("method: hac\n")
    (decoded / "model.pt").write_bytes(b"x")
    assert guard.folder_kind(decoded) == "decoded"
    guard.write_marker(decoded, "decoded")
    marker = json.loads((decoded / guard.MARKER).read_text())
    assert marker["kind"] == "decoded" and marker["command"].startswith("predictgs") and marker["version"]
    (decoded / guard.MARKER).write_text("{damaged")  # a damaged marker: the files decide
    assert guard.folder_kind(decoded) == "decoded"
    assert guard.folder_kind(tmp_path) is None and guard.folder_kind(tmp_path / "absent") is None
    assert guard.enclosing(scene / "images" / "x", ("scene",)) == (scene, "scene")
    assert guard.enclosing(scene / "sparse" / "0" / "x", ("scene",)) == (scene / "sparse" / "0", "scene")  # a model folder


def test_output_checks_name_what_they_protect(tmp_path, scene):
    run = tmp_path / "run"
    run.mkdir()
    guard.write_marker(run, "run")
    (run / "config.yaml").write_text("x")
    with pytest.raises(ConfigError, match="run's own config.yaml"):
        guard.check_bitstream_output(run / "config.yaml", run)
    guard.check_bitstream_output(run / "scene.pgs", run)  # the workflow's layout
    with pytest.raises(ConfigError, match="inside the scene folder"):
        guard.check_bitstream_output(scene / "images" / "x.pgs")
    guard.check_decoded_output(run / "decoded", run / "scene.pgs")  # the workflow's layout
    with pytest.raises(ConfigError, match="is a run folder"):
        guard.check_decoded_output(run)
    with pytest.raises(ConfigError, match="empty path"):
        guard.check_decoded_output("")
    with pytest.raises(ConfigError, match="holds the bitstream"):
        guard.check_decoded_output(tmp_path / "d", tmp_path / "d" / "x.pgs")
    with pytest.raises(ConfigError, match="is the scene folder"):
        guard.check_train_output(scene, scene)
    with pytest.raises(ConfigError, match="is a run folder"):
        guard.check_scene_output(run)
    guard.check_train_output(tmp_path / "new_run", scene)


# -- locks -------------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with guard.folder_lock(tmp_path, "run folder"):
        holder = json.loads((tmp_path / guard.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] and holder["command"]
        with pytest.raises(ConfigError, match=rf"in use by another predictgs process \(pid {os.getpid()} on "):
            guard.FolderLock(tmp_path).acquire()
    assert (tmp_path / guard.LOCK).read_text() == ""  # released: an empty lock file
    with guard.folder_lock(tmp_path) as lock:  # free again
        assert lock.held and lock.took_over is None


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / guard.LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                   "command": "predictgs train x"}))
    with pytest.warns(UserWarning, match=rf"taking over the lock left by pid {int(dead.stdout)} .*no longer running"):
        with guard.folder_lock(tmp_path) as lock:
            assert lock.took_over["pid"] == int(dead.stdout)


def test_a_file_system_without_locks_is_warned_about(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.warns(UserWarning, match="does not support file locks"):
        lock = guard.FolderLock(tmp_path).acquire()
    assert not lock.held and lock.unsupported
    lock.release()


@pytest.mark.slow
def test_two_trainings_into_one_folder(tmp_path, scene):
    """The campaign's case: two `train` on one --out, 1 s apart. The second is refused at once with one line
    naming the first; the first finishes and the folder holds its run."""
    config = scene.parent / "config.yaml"
    out = tmp_path / "run"
    first = subprocess.Popen(_cli("train", "--method", "hac", "--scene", scene, "--out", out, "--lmbda", "0.001",
                                  "--iterations", "150", "--config", config, "--device", "cpu", "--quiet"),
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ((out / guard.LOCK).exists() and (out / guard.LOCK).read_text().strip()):
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline
            time.sleep(0.05)
        second = _run("train", "--method", "hac", "--scene", scene, "--out", out, "--lmbda", "0.004",
                      "--iterations", "150", "--config", config, "--device", "cpu", "--quiet")
        assert first.poll() is None, "the first training ended before the second one was started"
    finally:
        stdout, stderr = first.communicate(timeout=600)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith("predictgs train: error: ")
    assert f"pid {first.pid} " in second.stderr and "--lmbda 0.001" in second.stderr
    assert first.returncode == 0, stderr
    assert json.loads(stdout)["lmbda"] == 0.001
    assert json.loads((out / "metrics.json").read_text())["lmbda"] == 0.001
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lmbda"] == 0.001


# -- replacing a folder ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_replace_folder_swaps_whole_folders(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(guard, "_exchange", lambda a, b: False)
    target = tmp_path / "decoded"
    target.mkdir()
    (target / "metrics.json").write_text("old")
    (target / "model.pt").write_text("old")
    new = guard.temporary_sibling(target)
    (new / "model.pt").write_text("new")
    guard.replace_folder(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["model.pt"] and (target / "model.pt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoded"]  # the old folder is gone


# -- the commands ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_workflow_sequence_on_one_run_folder(tmp_path, scene):
    """What Snakemake runs for one run, each step its own process: the locks never get in the way, the marker
    tells the kinds apart, and run_summary accepts what the steps wrote."""
    config = scene.parent / "config.yaml"
    run = tmp_path / "runs" / "hac" / "train_seed0"
    (run / "logs").mkdir(parents=True)  # Snakemake creates the log folders first
    steps = [
        ("train", "--method", "hac", "--scene", scene, "--out", run, "--iterations", "4", "--config", config,
         "--device", "cpu", "--quiet", "--seed", "0"),
        ("encode", run, "-o", run / "scene.pgs", "--device", "cpu"),
        ("decode", run / "scene.pgs", "-o", run / "decoded"),
        ("eval", run / "decoded", "--scene", scene, "--device", "cpu", "--no-lpips", "--fps-seconds", "0.05"),
        ("decode", run / "scene.pgs", "-o", run / "decoded"),  # a rerun replaces the folder, its evaluation too
        ("eval", run / "decoded", "--scene", scene, "--device", "cpu", "--no-lpips", "--fps-seconds", "0.05"),
    ]
    for step in steps:
        result = _run(*step)
        assert result.returncode == 0, f"{step[0]}: {result.stderr[-2000:]}"
    assert guard.read_marker(run)["kind"] == "run" and guard.read_marker(run / "decoded")["kind"] == "decoded"
    shutil.copyfile(run / "decoded" / "metrics.json", run / "decoded_metrics.json")
    summary = subprocess.run([sys.executable, str(ROOT / "workflow" / "scripts" / "run_summary.py"), run,
                              "--benchmark", "b", "--scene", "s", "--method", "hac", "--variant", "default",
                              "--seed", "0"], env=_env(), capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, summary.stderr
    assert "warning" not in summary.stderr  # every CRC recorded and checked
    merged = json.loads((run / "summary.json").read_text())
    decoded = json.loads((run / "decoded" / "metrics.json").read_text())
    assert merged["psnr"] == decoded["psnr"] and merged["size_bytes"] == (run / "scene.pgs").stat().st_size
    assert decoded["source_crc32"] == json.loads((run / "metrics.json").read_text())["bitstream_crc32"]


@pytest.mark.slow
def test_a_run_folder_of_an_earlier_version_keeps_working(tmp_path, scene):
    """No marker, no lock file: recognised by its files, encoded, resumed (which adds the marker)."""
    config = scene.parent / "config.yaml"
    run = tmp_path / "run"
    train = ("train", "--method", "scaffold", "--scene", scene, "--out", run, "--iterations", "2", "--config",
             config, "--device", "cpu", "--quiet")
    assert _run(*train).returncode == 0
    (run / guard.MARKER).unlink()
    (run / guard.LOCK).unlink()
    assert guard.folder_kind(run) == "run"
    refused = _run("decode", tmp_path / "x.pgs", "-o", run)  # still protected
    assert refused.returncode == 2 and "is a run folder" in refused.stderr
    result = _run("encode", run, "-o", run / "scene.pgs", "--no-eval")
    assert result.returncode == 0, result.stderr
    result = _run(*train)  # the run is complete: nothing trained, the marker added
    assert result.returncode == 0, result.stderr
    assert guard.read_marker(run)["kind"] == "run"
