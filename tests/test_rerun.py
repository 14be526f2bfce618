"""No result is lost by running a command again: every step (train, encode, decode, eval) rerun after every
other keeps every key the run's files held, a finished run is left as it is, and the workflow's per-run
summary still finds everything it reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from predictgs.cli import main
from predictgs.data.synth import generate_scene

pytestmark = pytest.mark.slow

ITERATIONS = 30
CONFIG = {"train": {"lpips": False, "checkpoints": 2},
          "model": {"curriculum": {"noise_from": 0.1, "entropy_from": 0.2, "bbox_update_at": 0.2},
                    "context": {"log2_grid": 8, "log2_plane": 8}}}
# Every ordered pair of distinct steps appears once in this sequence (an Eulerian circuit of the
# complete directed graph on the four steps), so each step is rerun after each other one.
SEQUENCE = "TEDVTDEVETVDT"
STEPS = {"T": "train", "E": "encode", "D": "decode", "V": "eval"}
ROOT = Path(__file__).resolve().parents[1]


def _load_run_summary():
    spec = importlib.util.spec_from_file_location("run_summary", ROOT / "workflow" / "scripts" / "run_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=9, num_points=300)
    config = root / "fast.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return root, scene, config


def _commands(root: Path, scene: Path, config: Path) -> dict[str, list[str]]:
    run, pgs, decoded = root / "run", root / "run" / "scene.pgs", root / "decoded"
    return {
        "train": ["train", "--method", "hac", "--scene", str(scene), "--out", str(run), "--config", str(config),
                  "--iterations", str(ITERATIONS), "--lmbda", "0.004", "--quiet"],
        "encode": ["encode", str(run), "-o", str(pgs), "--device", "cpu"],
        "decode": ["decode", str(pgs), "-o", str(decoded)],
        "eval": ["eval", str(decoded), "--scene", str(scene), "--device", "cpu", "--no-lpips",
                 "--fps-seconds", "0.01"],
    }


def _keys(value, prefix="") -> set[str]:
    """Every key of a JSON object, nested ones as dotted paths."""
    keys = set()
    if isinstance(value, dict):
        for key, sub in value.items():
            keys.add(prefix + key)
            keys |= _keys(sub, f"{prefix}{key}.")
    return keys


def _state(root: Path) -> dict[str, set[str]]:
    run_summary = _load_run_summary()
    run, decoded = root / "run", root / "decoded"
    files = {"run": run / "metrics.json", "decoded": decoded / "metrics.json"}
    state = {name: _keys(json.loads(path.read_text())) for name, path in files.items()}
    summary = run_summary.summarize(run / "metrics.json", benchmark="b", scene="s", method="hac", variant="default",
                                    decoded_path=decoded / "metrics.json", decoded_source=decoded / "metrics.json",
                                    bitstream_path=run / "scene.pgs",
                                    warn=lambda message: pytest.fail(message))
    state["summary"] = _keys(summary)
    return state


def test_every_step_rerun_after_every_other_keeps_every_key(workspace, capsys):
    root, scene, config = workspace
    commands = _commands(root, scene, config)
    for step in ("train", "encode", "decode", "eval"):
        assert main(commands[step]) == 0, step
    capsys.readouterr()
    first = _state(root)
    assert {"size_bytes", "section_bytes", "encode_seconds", "decode_seconds", "prequant_psnr",
            "psnr"} <= first["run"]
    size = json.loads((root / "run" / "metrics.json").read_text())["size_bytes"]
    pairs = {(a, b) for a, b in zip(SEQUENCE, SEQUENCE[1:])}
    assert len(pairs) == len(STEPS) * (len(STEPS) - 1)  # every ordered pair of distinct steps
    for index, letter in enumerate(SEQUENCE):
        step = STEPS[letter]
        assert main(commands[step]) == 0, step
        capsys.readouterr()
        now = _state(root)
        for name, keys in first.items():
            lost = keys - now[name]
            assert not lost, f"step {index} ({step}) lost {sorted(lost)} from {name}"
        assert json.loads((root / "run" / "metrics.json").read_text())["size_bytes"] == size


def test_train_on_a_finished_run_changes_nothing(workspace, capsys):
    root, scene, config = workspace
    commands = _commands(root, scene, config)
    run = root / "run"
    if not (run / "scene.pgs").is_file():
        for step in ("train", "encode"):
            assert main(commands[step]) == 0
    capsys.readouterr()
    def files():  # the lock file is touched by every writer that takes the folder: bookkeeping, not a result
        return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in run.iterdir()
                if path.is_file() and path.name != ".predictgs.lock"}

    before = files()
    assert main(commands["train"]) == 0
    out, err = capsys.readouterr()
    assert "is complete" in err and "--restart" in err
    printed = json.loads(out)
    saved = json.loads((run / "metrics.json").read_text())
    assert printed["size_bytes"] == saved["size_bytes"] and printed["psnr"] == saved["psnr"]
    after = files()
    assert after == before  # nothing trained, evaluated or written (train.log included)


def test_a_finished_run_missing_its_per_view_file_is_evaluated_again_keeping_encode_keys(workspace, capsys):
    root, scene, config = workspace
    commands = _commands(root, scene, config)
    run = root / "run"
    if not (run / "scene.pgs").is_file():
        for step in ("train", "encode"):
            assert main(commands[step]) == 0
    encoded = json.loads((run / "metrics.json").read_text())
    (run / "per_view.json").unlink()
    assert main(commands["train"]) == 0
    capsys.readouterr()
    again = json.loads((run / "metrics.json").read_text())
    assert (run / "per_view.json").is_file()
    assert set(encoded) <= set(again)
    # psnr stays the decoded model's (what encode wrote); the trained model's is prequant_psnr
    assert again["psnr"] == encoded["psnr"] and again["prequant_psnr"] == pytest.approx(encoded["prequant_psnr"])
    assert again["size_bytes"] == encoded["size_bytes"]


def test_restart_retrains(workspace, capsys, tmp_path):
    _, scene, config = workspace
    commands = _commands(tmp_path, scene, config)
    assert main(commands["train"]) == 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert main(commands["train"] + ["--restart"]) == 0
    capsys.readouterr()
    relog = (tmp_path / "run" / "train.log").read_text()
    assert relog.count("new run:") == 1 and relog != log  # a fresh log of a new training
