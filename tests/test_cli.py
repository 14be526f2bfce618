"""The command line: help, one-line errors with exit code 2, and the synth -> scene-info path."""

import argparse
import json
import re
import subprocess
import sys

import pytest

from predictgs.cli import build_parser, main


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


COMMANDS = list(_subcommands())

# Written by hand, so that a dropped or renamed option, a lost metavar or choice list fails the test:
# what each command's --help must show (whitespace-normalised).
HELP_SHOWS = {
    "scene-info": ["predictgs scene-info", "path scene folder", "--resolution {hac,3dgs,factor}",
                   "--llffhold LLFFHOLD", "--white-background, --no-white-background", "evaluation protocol:"],
    "synth": ["--family {outdoor,indoor,object}", "-o DIR, --out DIR", "--seed SEED", "--width WIDTH image width in pixels (default 160)",
              "--height HEIGHT", "--views VIEWS", "--quiet"],
    "train": ["--method METHOD --scene SCENE -o RUN_DIR", "-o RUN_DIR, --out RUN_DIR", "--lmbda LMBDA",
              "--iterations ITERATIONS", "--config FILE", "--restart", "--device DEVICE", "--max-width MAX_WIDTH",
              "--preset {embedded,mipnerf360,tandt,db,nerf_synthetic}", "--tensorboard", "train_log.csv",
              "predictgs_hacpp"],
    "encode": ["-o FILE, --out FILE, --output FILE", "--chunk-anchors CHUNK_ANCHORS", "--mlp-precision {fp32,fp16}",
               "--no-eval", "RUN_DIR", "--progress", "--quiet"],
    "decode": ["-o DECODED_DIR, --out DECODED_DIR, --output DECODED_DIR", "FILE .pgs bitstream", "--progress"],
    "eval": ["--scene SCENE", "--device DEVICE", "--no-lpips", "DECODED_DIR", "--resolution {hac,3dgs,factor}",
             "--save-renders DIR", "--progress"],
    "export": ["RUN_OR_DECODED", "-o FILE, --out FILE, --output FILE", "--format {ply,splat,ply_compressed}",
               "--view N", "view-dependent"],
    "render": ["RUN_OR_DECODED", "-o FILE, --out FILE, --output FILE", "--trajectory {test,spiral}", "--frames FRAMES",
               "predictgs[video]"],
    "presets": ["--json"],
}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "predictgs.cli", *args], capture_output=True, text=True)


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--help"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def _squash(text: str) -> str:
    """Without whitespace: help text compares equal however argparse wrapped it."""
    return "".join(text.split())


def test_top_level_help_lists_every_command(capsys):
    out = _help([], capsys)
    assert out.startswith("usage: predictgs ")
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for choice in sub._choices_actions:  # one per command, holding its one-line help
        assert re.search(rf"^\s+{re.escape(choice.dest)}\b", out, re.M), choice.dest
        assert _squash(choice.help) in _squash(out), choice.dest
    assert [c.dest for c in sub._choices_actions] == list(HELP_SHOWS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    """``predictgs COMMAND --help`` exits 0 and documents the command's own options: every option string,
    positional, help text and the description from the parser, required options shown as required in the
    usage line, plus the hand-written HELP_SHOWS."""
    assert command in HELP_SHOWS, f"add what `predictgs {command} --help` must show to HELP_SHOWS"
    parser = _subcommands()[command]
    out = _help([command], capsys)
    assert out.startswith(f"usage: predictgs {command} ")
    usage = out.split("\n\n")[0]
    flat = " ".join(out.split())
    for expected in HELP_SHOWS[command]:
        assert expected in flat, f"{command} --help lacks {expected!r}"
    assert _squash(parser.description) in _squash(out)
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            for option in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", out), f"{command}: {option}"
            if action.required:  # shown without [ ] in the usage
                assert re.search(rf"(?<!\[){re.escape(action.option_strings[0])}\b", usage), f"{command}: {action.dest}"
        else:
            assert (action.metavar or action.dest) in usage, f"{command}: {action.dest}"
        if action.help:
            assert _squash(action.help) in _squash(out), f"{command}: help of {action.dest}"


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


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(r"predictgs \S+\n", capsys.readouterr().out)


def test_every_writing_command_takes_o_and_out_and_keeps_its_old_spelling():
    parsers = _subcommands()
    for command in ("synth", "train", "encode", "decode", "export", "render"):
        options = {o for a in parsers[command]._actions for o in a.option_strings}
        assert {"-o", "--out"} <= options, command
    for command in ("encode", "decode"):  # the spelling of earlier versions still works
        assert "--output" in {o for a in parsers[command]._actions for o in a.option_strings}


def test_help_names_every_registered_method(capsys):
    from predictgs.methods import registry

    out = _squash(_help([], capsys)) + _squash(_help(["train"], capsys))
    for name in registry():
        assert name in out, name


def test_python_dash_m_predictgs_is_the_command_line():
    result = subprocess.run([sys.executable, "-m", "predictgs", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("predictgs ")
    bad = subprocess.run([sys.executable, "-m", "predictgs", "train", "--method", "nope"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("predictgs train: error:")
