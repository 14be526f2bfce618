"""The command line: help, one-line errors with exit code 2, and the synth -> scene-info path."""

import json
import subprocess
import sys

import pytest

from predictgs.cli import main

COMMANDS = ["scene-info", "synth"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "predictgs.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["scene-info", "/no/such/scene"], "/no/such/scene"),
    (["synth", "--family", "moon", "--out", "x"], "moon"),
    (["synth", "--family", "outdoor", "--out", "x", "--width", "-3"], "-3"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr


def test_unsupported_camera_model_is_named(tmp_path):
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (tmp_path / "images").mkdir()
    (sparse / "cameras.txt").write_text("1 FISHEYE_FOV 64 48 30 32 24 0.1\n")
    (sparse / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    (sparse / "points3D.txt").write_text("")
    result = run_cli("scene-info", str(tmp_path))
    assert result.returncode == 2
    assert "FISHEYE_FOV" in result.stderr and "Traceback" not in result.stderr


def test_synth_then_scene_info(tmp_path, capsys):
    out = tmp_path / "scene"
    assert main(["synth", "--family", "object", "--seed", "3", "--out", str(out), "--width", "48",
                 "--height", "36", "--views", "9", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["scene-info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "colmap"
    assert info["num_images"] == 9 and info["num_test"] == 2 and info["num_train"] == 7
    assert info["image_size"] == [48, 36]
    assert info["num_points"] > 0 and not info["points_are_random"]
    assert info["extent"] > 0
