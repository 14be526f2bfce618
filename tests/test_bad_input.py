"""Bad input at every boundary, as a table: broken or hostile scene files, configs, command-line options, run
directories and crafted bitstreams; outputs that would overwrite inputs, writers that would collide
(locks), numbers no parser should choke on, evaluation protocols that would measure the wrong views, scene
images that would be read wrongly, and workflow intermediates that would turn bad data into a table. Every
case must end in exactly one line ``predictgs CMD: error: ...`` (``run_summary: error: ...`` for the
workflow's summary step) and exit code 2; most also say which file, key or option is at fault
(``needle``). A case fails when the command raises (a traceback), succeeds (exit 0: bad input accepted),
runs code from a file, or writes what it must not. A few cases (``expect_ok``) are inputs whose right
handling is to succeed, with a check of the effect (a stale lock taken over, a decoded folder replaced
whole): they are clean when the command succeeds and the effect is right.

The cases run in-process through ``predictgs.cli.main`` (the summary step through ``run_summary.cli``),
each in its own folder (the current directory too), on a tiny synthetic scene and a 2-iteration run.

Run as a script to count the outcomes per category for whichever ``predictgs`` is importable, e.g. for
an older checkout:

    PYTHONPATH=/tmp/old-main python tests/test_bad_input.py [--show]

Outcomes: ``clean`` (exit 2, one error line), ``traceback`` (an exception escaped, another exit code, or
several error lines), ``accepted`` (exit 0, or the command's effect was wrong: code from a file ran, a
file was written before the input was known to be good).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

CATEGORIES = ("scene", "config", "cli", "rundir", "bitstream", "outputs", "locks", "numbers", "protocol", "images",
              "workflow")
MARKER = "PWNED"  # written by the hostile pickles' payload: its existence means code ran


# -- the base scene, run, bitstream and decoded model -------------------------------------------------------
@dataclass
class Base:
    root: Path
    scene: Path
    config: Path
    run: Path
    pgs: Path
    decoded: Path
    workflow_run: Path  # a run folder as the workflow leaves it: scene.pgs, decoded/ (evaluated), decoded_metrics.json


def _quiet_main(argv: list[str]) -> int:
    from predictgs.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"building the base case failed: {' '.join(map(str, argv))}: {err.getvalue()}")
    return code


def build_base(root: Path) -> Base:
    """A 40x30, 8-view object scene; a 2-iteration Scaffold-GS run on it (no LPIPS); its bitstream; the
    decoded model directory; a copy of the run encoded, decoded and evaluated as the workflow does it."""
    from predictgs.data.synth import generate_scene

    root = Path(root)
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=8, num_points=200)
    config = root / "base.yaml"
    config.write_text("train:\n  lpips: false\n  checkpoints: 1\n")
    run, pgs, decoded = root / "run", root / "base.pgs", root / "decoded"
    _quiet_main(["train", "--method", "scaffold", "--scene", scene, "--out", run, "--iterations", "2",
                 "--config", config, "--device", "cpu", "--quiet"])
    _quiet_main(["encode", run, "-o", pgs, "--no-eval"])
    _quiet_main(["decode", pgs, "-o", decoded])
    workflow_run = root / "workflow_run"
    shutil.copytree(run, workflow_run)
    _quiet_main(["encode", workflow_run, "-o", workflow_run / "scene.pgs", "--no-eval"])
    _quiet_main(["decode", workflow_run / "scene.pgs", "-o", workflow_run / "decoded"])
    _quiet_main(["eval", workflow_run / "decoded", "--scene", scene, "--device", "cpu", "--no-lpips",
                 "--fps-seconds", "0.01"])
    shutil.copyfile(workflow_run / "decoded" / "metrics.json", workflow_run / "decoded_metrics.json")
    return Base(root, scene, config, run, pgs, decoded, workflow_run)


class Ctx:
    """One case's folder and copies of the base files it may change. Placeholders in a case's argv:
    {tmp} the case folder, {scene} {run} {pgs} {decoded} {cfg} the base files (read-only),
    {s} {r} {d} {w} the case's copies of the scene, run, decoded model and workflow run, {null} a link to
    /dev/null. ``cleanups`` run after the case (e.g. releasing a lock a setup holds)."""

    def __init__(self, base: Base, tmp: Path, old: bool):
        self.base, self.tmp, self.old = base, Path(tmp), old
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.cleanups: list[Callable[[], None]] = []

    @property
    def fields(self) -> dict:
        b = self.base
        return {"tmp": self.tmp, "scene": b.scene, "run": b.run, "pgs": b.pgs, "decoded": b.decoded,
                "cfg": b.config, "s": self.tmp / "scene", "r": self.tmp / "run", "d": self.tmp / "decoded",
                "w": self.tmp / "wfrun", "null": self.tmp / "null"}

    def workflow_run(self) -> Path:
        target = self.tmp / "wfrun"
        if not target.exists():
            shutil.copytree(self.base.workflow_run, target)
        return target

    def scene(self) -> Path:
        target = self.tmp / "scene"
        if not target.exists():
            shutil.copytree(self.base.scene, target)
        return target

    def run(self) -> Path:
        target = self.tmp / "run"
        if not target.exists():
            shutil.copytree(self.base.run, target)
        return target

    def decoded(self) -> Path:
        target = self.tmp / "decoded"
        if not target.exists():
            shutil.copytree(self.base.decoded, target)
        return target

    @property
    def marker(self) -> Path:
        return self.tmp / MARKER


@dataclass
class Case:
    id: str
    category: str
    argv: list[str]
    setup: Callable[[Ctx], None] | None = None
    needle: str | None = None  # text the error line must contain (the file, key or option)
    check: Callable[[Ctx], str | None] | None = None  # after a clean error: what must not have happened
    expect_ok: bool = False  # the right handling succeeds (exit 0); ``check`` then says what must be true
    runner: str = "predictgs"  # or "run_summary" (workflow/scripts/run_summary.py)


# -- helpers that break files ------------------------------------------------------------------------------
def _sparse(ctx: Ctx) -> Path:
    return ctx.scene() / "sparse" / "0"


def _edit_colmap(file: str, row: int, column: int, value: str):
    """Set one field of a COLMAP text file's data row (images.txt: the row-th image line)."""
    def setup(ctx: Ctx) -> None:
        path = _sparse(ctx) / file
        lines = path.read_text().splitlines()
        data = [i for i, line in enumerate(lines) if not line.lstrip().startswith("#")]
        if file == "images.txt":
            data = data[0::2]
        parts = lines[data[row]].split(" ")
        parts[column] = value
        lines[data[row]] = " ".join(parts)
        path.write_text("\n".join(lines) + "\n")
    return setup


def _replace_text(file: str, text: str):
    def setup(ctx: Ctx) -> None:
        (_sparse(ctx) / file).write_text(text)
    return setup


def _edit_text(file: str, edit: Callable[[list[str]], list[str]]):
    def setup(ctx: Ctx) -> None:
        path = _sparse(ctx) / file
        path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    return setup


def _model(ctx: Ctx):
    from predictgs.data.colmap import read_colmap_model

    return read_colmap_model(ctx.scene())


def _binary(edit=None, truncate: dict | None = None):
    """The scene's model as .bin files, after ``edit(cameras, images, points)``; ``truncate`` cuts files
    to the given number of bytes (negative: that many bytes off the end)."""
    def setup(ctx: Ctx) -> None:
        from predictgs.data.colmap import write_colmap_binary

        model = _model(ctx)
        if edit is not None:
            edit(model.cameras, model.images, model.points)
        folder = _sparse(ctx)
        for name in ("cameras.txt", "images.txt", "points3D.txt"):
            (folder / name).unlink()
        write_colmap_binary(folder, model.cameras, model.images, model.points)
        for name, size in (truncate or {}).items():
            data = (folder / name).read_bytes()
            (folder / name).write_bytes(data[:size])
    return setup


def _first(mapping):
    return mapping[sorted(mapping)[0]]


def _image_file(content: bytes | None, directory: bool = False):
    def setup(ctx: Ctx) -> None:
        path = ctx.scene() / "images" / "view_003.png"
        path.unlink()
        if directory:
            path.mkdir()
        else:
            path.write_bytes(content)
    return setup


def _llff(edit=None, raw: bytes | None = None, keep_points: bool = True):
    """The scene as LLFF (poses_bounds.npy from the COLMAP poses; the COLMAP points kept), after
    ``edit(array (N, 17))``; ``raw`` replaces the file's bytes."""
    def setup(ctx: Ctx) -> None:
        model = _model(ctx)
        rows = []
        for im in sorted(model.images.values(), key=lambda im: im.name):
            cam = model.cameras[im.camera_id]
            c2w = im.R.T
            centre = -im.R.T @ np.asarray(im.tvec)
            columns = [c2w[:, 1], c2w[:, 0], -c2w[:, 2], centre, [cam.height, cam.width, cam.params[0]]]
            rows.append(np.concatenate([np.stack(columns, axis=1).reshape(-1), [0.1, 10.0]]))
        data = np.array(rows)
        if edit is not None:
            data = edit(data)
        folder = _sparse(ctx)
        (folder / "cameras.txt").unlink()
        (folder / "images.txt").unlink()
        if not keep_points:
            shutil.rmtree(ctx.scene() / "sparse")
        path = ctx.scene() / "poses_bounds.npy"
        if raw is not None:
            path.write_bytes(raw)
        else:
            np.save(path, data, allow_pickle=True)
    return setup


def _set(array_edit):
    def edit(data):
        data = np.array(data, dtype=object if array_edit == "object" else np.float64)
        if array_edit != "object":
            array_edit(data)
        return data
    return edit


def _json_scene(kind: str, edit=None, text: str | None = None, ply: str | None = None):
    """The scene as Blender (transforms_train/test.json, OpenGL camera-to-world) or instant-ngp
    (transforms.json with fl_x, fl_y, cx, cy, w, h); ``edit(meta)`` changes the JSON (of the training
    file for Blender), ``text`` replaces it, ``ply`` is written as points3d.ply beside it."""
    def setup(ctx: Ctx) -> None:
        model = _model(ctx)
        cam = _first(model.cameras)
        frames = []
        for im in sorted(model.images.values(), key=lambda im: im.name):
            c2w = np.eye(4)
            c2w[:3, :3] = im.R.T
            c2w[:3, 3] = -im.R.T @ np.asarray(im.tvec)
            c2w[:3, 1:3] *= -1.0
            frames.append({"file_path": f"images/{Path(im.name).stem}", "transform_matrix": c2w.tolist()})
        shutil.rmtree(ctx.scene() / "sparse")
        fx = float(cam.params[0])
        if kind == "blender":
            angle = 2 * math.atan(cam.width / (2 * fx))
            files = {"transforms_train.json": {"camera_angle_x": angle, "frames": frames[2:]},
                     "transforms_test.json": {"camera_angle_x": angle, "frames": frames[:2]}}
            main_file = "transforms_train.json"
        else:
            files = {"transforms.json": {"fl_x": fx, "fl_y": fx, "cx": cam.width / 2, "cy": cam.height / 2,
                                         "w": cam.width, "h": cam.height, "frames": frames}}
            main_file = "transforms.json"
        if edit is not None:
            edit(files[main_file])
        for name, meta in files.items():
            (ctx.scene() / name).write_text(json.dumps(meta))
        if text is not None:
            (ctx.scene() / main_file).write_text(text)
        if ply is not None:
            (ctx.scene() / "points3d.ply").write_text(ply)
    return setup


def _frame(index: int, key: str, value):
    def edit(meta):
        meta["frames"][index][key] = value
    return edit


def _meta(key: str, value):
    def edit(meta):
        meta[key] = value
    return edit


def _matrix(value_at):
    def edit(meta):
        meta["frames"][0]["transform_matrix"] = value_at(meta["frames"][0]["transform_matrix"])
    return edit


def _ply(vertices: list[str], count: int | None = None) -> str:
    head = ["ply", "format ascii 1.0", f"element vertex {len(vertices) if count is None else count}",
            "property float x", "property float y", "property float z", "end_header"]
    return "\n".join(head + vertices) + "\n"


# -- scene files ---------------------------------------------------------------------------------------
SCENE_INFO = ["scene-info", "{s}"]
TRAIN_S = ["train", "--method", "scaffold", "--scene", "{s}", "--out", "{tmp}/out", "--iterations", "1",
           "--config", "{cfg}", "--device", "cpu", "--quiet"]


def _scene_cases() -> list[Case]:
    c = []

    def add(id, setup, needle=None, argv=SCENE_INFO):
        c.append(Case(id, "scene", list(argv), setup, needle))

    # COLMAP text: cameras
    add("cameras.txt fx nan", _edit_colmap("cameras.txt", 0, 4, "nan"), "cameras.txt")
    add("cameras.txt fx 0", _edit_colmap("cameras.txt", 0, 4, "0"), "cameras.txt")
    add("cameras.txt fx negative", _edit_colmap("cameras.txt", 0, 4, "-31.4"), "cameras.txt")
    add("cameras.txt fy inf", _edit_colmap("cameras.txt", 0, 5, "inf"), "cameras.txt")
    add("cameras.txt cx nan", _edit_colmap("cameras.txt", 0, 6, "nan"), "cameras.txt")
    add("cameras.txt width negative", _edit_colmap("cameras.txt", 0, 2, "-40"), "cameras.txt")
    add("cameras.txt width 0", _edit_colmap("cameras.txt", 0, 2, "0"), "cameras.txt")
    add("cameras.txt height negative", _edit_colmap("cameras.txt", 0, 3, "-30"), "cameras.txt")
    add("cameras.txt unknown model", _edit_colmap("cameras.txt", 0, 1, "FOO"), "FOO")
    add("cameras.txt missing parameter", _edit_text("cameras.txt", lambda ls: ls[:-1] + [ls[-1].rsplit(" ", 1)[0]]),
        "cameras.txt")
    add("cameras.txt text parameter", _edit_colmap("cameras.txt", 0, 4, "abc"), "cameras.txt")
    add("cameras.txt fisheye model", _replace_text("cameras.txt", "1 OPENCV_FISHEYE 40 30 31 31 20 15 0.1 0 0 0\n"),
        "OPENCV_FISHEYE")
    add("cameras.txt empty", _replace_text("cameras.txt", "# no cameras\n"), "camera")
    add("cameras.txt text id", _edit_colmap("cameras.txt", 0, 0, "x"), "cameras.txt")
    add("cameras.txt duplicate id", _edit_text("cameras.txt", lambda ls: ls + [ls[-1].replace(" 31.", " 62.", 1)]),
        "cameras.txt")
    # COLMAP text: images
    add("images.txt qw nan", _edit_colmap("images.txt", 0, 1, "nan"), "images.txt")
    add("images.txt zero quaternion", lambda ctx: [_edit_colmap("images.txt", 1, i, "0")(ctx) for i in range(1, 5)],
        "images.txt")
    add("images.txt quaternion norm 2", lambda ctx: _scale_quaternion(ctx, 1, 2.0), "images.txt")
    add("images.txt tx inf", _edit_colmap("images.txt", 2, 5, "inf"), "images.txt")
    add("images.txt tz nan", _edit_colmap("images.txt", 3, 7, "nan"), "images.txt")
    add("images.txt unknown camera", _edit_colmap("images.txt", 0, 8, "99"), "camera 99")
    add("images.txt missing image file", _edit_colmap("images.txt", 0, 9, "nothere.png"), "nothere.png")
    add("images.txt short line", _edit_text("images.txt", lambda ls: [_drop_field(l, 7) if l.startswith("2 ") else l
                                                                    for l in ls]), "images.txt")
    add("images.txt text keypoint", _edit_text("images.txt", lambda ls: _edit_keypoints(ls, "x y z")), "images.txt")
    add("images.txt keypoints not triples", _edit_text("images.txt", lambda ls: _edit_keypoints(ls, "1.0 2.0")),
        "images.txt")
    add("images.txt duplicate id", _edit_colmap("images.txt", 1, 0, "1"), "images.txt")
    add("images.txt no images", _replace_text("images.txt", "# none\n"), "images")
    add("images.txt NaN pose, train", _edit_colmap("images.txt", 2, 5, "nan"), "images.txt", TRAIN_S)
    # COLMAP text: points
    add("points3D.txt x nan", _edit_colmap("points3D.txt", 0, 1, "nan"), "points3D.txt")
    add("points3D.txt y inf", _edit_colmap("points3D.txt", 5, 2, "inf"), "points3D.txt")
    add("points3D.txt NaN, train", _edit_colmap("points3D.txt", 3, 3, "nan"), "points3D.txt", TRAIN_S)
    add("points3D.txt all NaN, train", _edit_text("points3D.txt", lambda ls: [
        " ".join([p[0], "nan", "nan", "nan", *p[4:]]) if not l.startswith("#") else l
        for l, p in ((l, l.split(" ")) for l in ls)]), "points3D.txt", TRAIN_S)
    add("points3D.txt rgb 300", _edit_colmap("points3D.txt", 0, 4, "300"), "points3D.txt")
    add("points3D.txt rgb -1", _edit_colmap("points3D.txt", 0, 5, "-1"), "points3D.txt")
    add("points3D.txt odd track", _edit_text("points3D.txt", lambda ls: ls + ["9999 0 0 0 1 2 3 0.5 1"]),
        "points3D.txt")
    add("points3D.txt short line", _edit_text("points3D.txt", lambda ls: ls + ["9999 0 0"]), "points3D.txt")
    add("points3D.txt text coordinate", _edit_colmap("points3D.txt", 2, 1, "left"), "points3D.txt")
    add("points3D.txt duplicate id", _edit_text("points3D.txt", lambda ls: ls + [ls[-1]]), "points3D.txt")
    add("points3D.txt binary junk", lambda ctx: (_sparse(ctx) / "points3D.txt").write_bytes(b"\xff\xfe\x00" * 50),
        "points3D.txt")
    # COLMAP binary
    add("cameras.bin truncated", _binary(truncate={"cameras.bin": 20}), "cameras.bin")
    add("cameras.bin fx nan", _binary(lambda c, i, p: _first(c).params.__setitem__(0, np.nan)), "cameras.bin")
    add("cameras.bin width 0", _binary(lambda c, i, p: setattr(_first(c), "width", 0)), "cameras.bin")
    add("cameras.bin huge width", _binary(lambda c, i, p: setattr(_first(c), "width", 2**62)), "cameras.bin")
    add("cameras.bin unknown model id", lambda ctx: _patch_camera_model(ctx, 99), "cameras.bin")
    add("images.bin zero quaternion", _binary(lambda c, i, p: _first(i).qvec.__setitem__(slice(None), 0.0)),
        "images.bin")
    add("images.bin tvec nan", _binary(lambda c, i, p: _first(i).tvec.__setitem__(1, np.nan)), "images.bin")
    add("images.bin truncated name", _binary(truncate={"images.bin": 8 + 64 + 3}), "images.bin")
    add("images.bin huge count", lambda ctx: _patch_count(ctx, "images.bin", 2**40), "images.bin")
    add("points3D.bin xyz inf", _binary(lambda c, i, p: p.xyz.__setitem__((0, 0), np.inf)), "points3D.bin")
    add("points3D.bin truncated", _binary(truncate={"points3D.bin": -5}), "points3D.bin")
    add("points3D.bin huge count", lambda ctx: _patch_count(ctx, "points3D.bin", 2**40), "points3D.bin")
    # image files
    add("image not an image", _image_file(b"this is not a png"), "view_003.png")
    add("image empty file", _image_file(b""), "view_003.png")
    add("image is a folder", _image_file(None, directory=True), "view_003.png")
    # scene-info reads image headers only; the pixels are decoded when an image is first used (here: the
    # test view, evaluated at the end of the training)
    add("image truncated PNG, train", lambda ctx: _truncate_image(ctx), "view_000.png", TRAIN_S)
    # LLFF
    add("llff wrong shape", _llff(lambda d: d[:, :16]), "poses_bounds.npy")
    add("llff pose nan", _llff(_set(lambda d: d.__setitem__((0, 3), np.nan))), "poses_bounds.npy")
    add("llff focal 0", _llff(_set(lambda d: d.__setitem__((1, 14), 0.0))), "poses_bounds.npy")
    add("llff focal negative", _llff(_set(lambda d: d.__setitem__((1, 14), -30.0))), "poses_bounds.npy")
    add("llff centre inf", _llff(_set(lambda d: d.__setitem__((2, 7), np.inf))), "poses_bounds.npy")
    add("llff height 0", _llff(_set(lambda d: d.__setitem__((2, 4), 0.0))), "poses_bounds.npy")
    add("llff width negative", _llff(_set(lambda d: d.__setitem__((2, 9), -40.0))), "poses_bounds.npy")
    add("llff bounds nan", _llff(_set(lambda d: d.__setitem__((0, 16), np.nan))), "poses_bounds.npy")
    add("llff zero rotation", _llff(_set(lambda d: d.__setitem__((3, [0, 1, 2, 5, 6, 7, 10, 11, 12]), 0.0))),
        "poses_bounds.npy")
    add("llff object array", _llff(_set("object")), "poses_bounds.npy")
    add("llff not npy", _llff(raw=b"PK\x03\x04 not numpy"), "poses_bounds.npy")
    add("llff fewer poses than images", _llff(lambda d: d[:-1]), "poses_bounds.npy")
    # Blender / instant-ngp
    add("blender matrix nan", _json_scene("blender", _matrix(lambda m: [[float("nan")] * 4] + m[1:])),
        "transforms_train.json")
    add("blender matrix zero", _json_scene("blender", _matrix(lambda m: [[0.0] * 4 for _ in range(4)])),
        "transforms_train.json")
    add("blender matrix 2x2", _json_scene("blender", _matrix(lambda m: [[1.0, 0.0], [0.0, 1.0]])),
        "transforms_train.json")
    add("blender matrix text", _json_scene("blender", _matrix(lambda m: "identity")), "transforms_train.json")
    add("blender angle 0", _json_scene("blender", _meta("camera_angle_x", 0.0)), "transforms_train.json")
    add("blender angle negative", _json_scene("blender", _meta("camera_angle_x", -0.7)), "transforms_train.json")
    add("blender angle nan", _json_scene("blender", _meta("camera_angle_x", float("nan"))), "transforms_train.json")
    add("blender angle 4 rad", _json_scene("blender", _meta("camera_angle_x", 4.0)), "transforms_train.json")
    add("blender angle text", _json_scene("blender", _meta("camera_angle_x", "wide")), "transforms_train.json")
    add("blender frames not a list", _json_scene("blender", _meta("frames", {"a": 1})), "transforms_train.json")
    add("blender frame not an object", _json_scene("blender", lambda m: m["frames"].insert(0, 5)),
        "transforms_train.json")
    add("blender frame without matrix", _json_scene("blender", lambda m: m["frames"][0].pop("transform_matrix")),
        "transforms_train.json")
    add("blender file_path number", _json_scene("blender", _frame(0, "file_path", 17)), "transforms_train.json")
    add("blender invalid JSON", _json_scene("blender", text='{"frames": [,]}'), "transforms_train.json")
    add("blender ply nan", _json_scene("blender", ply=_ply(["0 0 0", "nan 1 2", "1 1 1"])), "points3d.ply")
    add("blender ply garbage", _json_scene("blender", ply="ply\nnonsense\n"), "points3d.ply")
    add("blender ply short", _json_scene("blender", ply=_ply(["0 0 0"], count=5)), "points3d.ply")
    add("ngp fl_x 0", _json_scene("ngp", _meta("fl_x", 0)), "transforms.json")
    add("ngp fl_y nan", _json_scene("ngp", _meta("fl_y", float("nan"))), "transforms.json")
    add("ngp w negative", _json_scene("ngp", _meta("w", -40)), "transforms.json")
    add("ngp cx inf", _json_scene("ngp", _meta("cx", float("inf"))), "transforms.json")
    add("ngp k1 text", _json_scene("ngp", _meta("k1", "strong")), "transforms.json")
    # folders
    add("scene is a file", lambda ctx: (ctx.tmp / "file").write_text("x"), "file", ["scene-info", "{tmp}/file"])
    add("scene missing", None, "missing", ["scene-info", "{tmp}/missing"])
    add("scene empty folder", lambda ctx: (ctx.tmp / "empty").mkdir(), "empty", ["scene-info", "{tmp}/empty"])
    add("images folder missing", lambda ctx: shutil.rmtree(ctx.scene() / "images"), "images")
    return c


def _scale_quaternion(ctx: Ctx, row: int, factor: float) -> None:
    path = _sparse(ctx) / "images.txt"
    lines = path.read_text().splitlines()
    data = [i for i, line in enumerate(lines) if not line.lstrip().startswith("#")][0::2]
    parts = lines[data[row]].split(" ")
    parts[1:5] = [repr(float(v) * factor) for v in parts[1:5]]
    lines[data[row]] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")


def _drop_field(line: str, index: int) -> str:
    parts = line.split(" ")
    return " ".join(parts[:index] + parts[index + 1:])


def _edit_keypoints(lines: list[str], text: str) -> list[str]:
    data = [i for i, line in enumerate(lines) if not line.lstrip().startswith("#")]
    out = list(lines)
    out[data[1]] = text  # the keypoint line of the first image
    return out


def _patch_count(ctx: Ctx, name: str, count: int) -> None:
    _binary()(ctx)
    path = _sparse(ctx) / name
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", count)
    path.write_bytes(bytes(data))


def _patch_camera_model(ctx: Ctx, model_id: int) -> None:
    _binary()(ctx)
    path = _sparse(ctx) / "cameras.bin"
    data = bytearray(path.read_bytes())
    data[12:16] = struct.pack("<i", model_id)
    path.write_bytes(bytes(data))


def _truncate_image(ctx: Ctx) -> None:
    path = ctx.scene() / "images" / "view_000.png"
    path.write_bytes(path.read_bytes()[:60])


# -- configs -------------------------------------------------------------------------------------------
def _config_case(id: str, sections, method: str = "scaffold", needle: str | None = None, old=None,
                 cli_iterations: bool = True, cli_device: bool = True) -> Case:
    """``train --config`` with ``sections`` (a mapping merged over lpips off and one checkpoint, or the raw
    text of the file); ``old`` replaces ``sections`` for checkouts from before the config restructure."""
    def setup(ctx: Ctx) -> None:
        content = old if (ctx.old and old is not None) else sections
        if isinstance(content, (str, bytes)):
            data = content.encode() if isinstance(content, str) else content
        else:
            content = dict(content)
            if isinstance(content.get("train", {}), dict):
                content["train"] = {"lpips": False, "checkpoints": 1, **content.get("train", {})}
            data = yaml.safe_dump(content).encode()
        (ctx.tmp / "cfg.yaml").write_bytes(data)

    argv = ["train", "--method", method, "--scene", "{scene}", "--out", "{tmp}/out", "--config", "{tmp}/cfg.yaml",
            "--quiet", *(["--iterations", "1"] if cli_iterations else []), *(["--device", "cpu"] if cli_device else [])]
    return Case(id, "config", argv, setup, needle)


def _config_cases() -> list[Case]:
    m = lambda **kw: {"model": kw}  # noqa: E731
    t = lambda **kw: {"train": kw}  # noqa: E731
    p = lambda **kw: {"protocol": kw}  # noqa: E731
    return [
        _config_case("model.feat_dim -3", m(feat_dim=-3), needle="model.feat_dim"),
        _config_case("model.feat_dim 0", m(feat_dim=0), needle="model.feat_dim"),
        _config_case("model.feat_dim 1e9", m(feat_dim=10**9), needle="model.feat_dim"),
        _config_case("model.feat_dim 3.5", m(feat_dim=3.5), needle="model.feat_dim"),
        _config_case("model.feat_dim true", m(feat_dim=True), needle="model.feat_dim"),
        _config_case("model.feat_dim text", m(feat_dim="many"), needle="model.feat_dim"),
        _config_case("model.n_offsets 0", m(n_offsets=0), needle="model.n_offsets"),
        _config_case("model.n_offsets -1", m(n_offsets=-1), needle="model.n_offsets"),
        _config_case("model.voxel_size -1", m(voxel_size=-1.0), needle="model.voxel_size"),
        _config_case("model.voxel_size 0", m(voxel_size=0.0), needle="model.voxel_size"),
        _config_case("model.voxel_size nan", m(voxel_size=float("nan")), needle="model.voxel_size"),
        _config_case("model.lr one number", m(lr_attributes=[0.01]), needle="model.lr_attributes"),
        _config_case("model.lr three numbers", m(lr_attributes=[0.01, 0.001, 0.0001]), needle="model.lr_attributes"),
        _config_case("model.lr scalar", m(lr_attributes=0.01), needle="model.lr_attributes"),
        _config_case("model.lr negative", m(lr_attributes=[-0.01, 0.001]), needle="model.lr_attributes"),
        _config_case("model.lr nan", m(lr_mlp_color=[float("nan"), 0.001]), needle="model.lr_mlp_color"),
        _config_case("model.lr text", m(lr_scaling=["fast", 0.001]), needle="model.lr_scaling"),
        _config_case("model.lambda_dssim 2", m(lambda_dssim=2.0), needle="model.lambda_dssim"),
        _config_case("model.lambda_dssim nan", m(lambda_dssim=float("nan")), needle="model.lambda_dssim"),
        _config_case("model.lambda_scale -1", m(lambda_scale=-1.0), needle="model.lambda_scale"),
        _config_case("model.densify.min_opacity 1.5", m(densify={"min_opacity": 1.5}), needle="min_opacity"),
        _config_case("model.densify.update_depth 0", m(densify={"update_depth": 0}), needle="update_depth"),
        _config_case("model.densify.start_stat -0.1", m(densify={"start_stat": -0.1}), needle="start_stat"),
        _config_case("model.densify not a mapping", m(densify=3), needle="model.densify"),
        _config_case("model unknown key", m(no_such_option=1), needle="no_such_option"),
        _config_case("model not a mapping", {"model": "big"}, needle="model"),
        _config_case("hac context.log2_grid 40", m(context={"log2_grid": 40}), "hac", needle="log2_grid"),
        _config_case("hac context.q0_scaling 0", m(context={"q0_scaling": 0.0}), "hac", needle="q0_scaling"),
        _config_case("hac mask_threshold 1", m(mask_threshold=1.0), "hac", needle="mask_threshold"),
        _config_case("hac entropy_sample_rate 2", m(entropy_sample_rate=2.0), "hac", needle="entropy_sample_rate"),
        _config_case("hac noise_from 1.5", m(curriculum={"noise_from": 1.5}), "hac", needle="noise_from",
                     old=m(noise_from=1.5)),
        _config_case("predictgs schedule exp", m(curriculum={"schedule": "exp"}), "predictgs", needle="schedule",
                     old=m(schedule="exp")),
        _config_case("hac milestones iterations", m(curriculum={"milestones": "iterations"}), "hac",
                     needle="milestones"),
        _config_case("predictgs ds_init 0", m(curriculum={"ds_init": 0.0}), "predictgs", needle="ds_init",
                     old=m(ds_init=0.0)),
        _config_case("predictgs residual_dim -1", m(residual_dim=-1), "predictgs", needle="residual_dim"),
        _config_case("predictgs sfp.log2_grid 0", m(sfp={"log2_grid": 0}), "predictgs", needle="log2_grid"),
        _config_case("train.log_every 0", t(log_every=0), needle="train.log_every"),
        _config_case("train.iterations 0", t(iterations=0), needle="train.iterations", cli_iterations=False),
        _config_case("train.checkpoints 0", t(checkpoints=0), needle="train.checkpoints"),
        _config_case("train.seed -1", t(seed=-1), needle="train.seed"),
        _config_case("train.seed 2^70", t(seed=2**70), needle="train.seed"),
        _config_case("train.seed text", t(seed="lucky"), needle="train.seed"),
        _config_case("train.device bogus", t(device="bogus"), needle="bogus", cli_device=False),
        _config_case("train.device number", t(device=3), needle="device", cli_device=False),
        _config_case("train.lpips text", t(lpips="yes"), needle="train.lpips"),
        _config_case("train unknown key", t(epochs=3), needle="epochs"),
        _config_case("train not a mapping", {"train": [1, 2]}, needle="train"),
        _config_case("hac train.lmbda -1", t(lmbda=-1.0), "hac", needle="lmbda", old=m(lmbda=-1.0)),
        _config_case("hac train.lmbda nan", t(lmbda=float("nan")), "hac", needle="lmbda", old=m(lmbda=float("nan"))),
        _config_case("benchmark [1]", {"benchmark": [1]}, needle="benchmark"),
        _config_case("benchmark empty", {"benchmark": ""}, needle="benchmark"),
        _config_case("benchmark number", {"benchmark": 5}, needle="benchmark"),
        _config_case("protocol.llffhold text", p(llffhold="eight"), needle="llffhold"),
        _config_case("protocol.resolution 4k", p(resolution="4k"), needle="resolution"),
        _config_case("protocol.max_width 0", p(max_width=0), needle="max_width"),
        _config_case("protocol.downscale -2", p(resolution="factor", downscale=-2.0), needle="downscale"),
        _config_case("protocol.downscale inf", p(resolution="factor", downscale=float("inf")), needle="downscale"),
        _config_case("protocol.random_init_points 0", p(random_init_points=0), needle="random_init_points"),
        _config_case("protocol unknown key", p(hold=3), needle="hold"),
        _config_case("protocol.images_folder empty", p(images_folder=""), needle="images_folder"),
        _config_case("unknown section", {"training": {"iterations": 3}}, needle="training"),
        _config_case("not YAML", "model: [unclosed\n  feat_dim: 3\n", needle="cfg.yaml"),
        _config_case("top level a list", "- 1\n- 2\n", needle="cfg.yaml"),
        _config_case("not UTF-8", b"model:\n  feat_dim: \xff\xfe\n", needle="cfg.yaml"),
        _config_case("python object tag", "model: !!python/object/apply:os.system ['true']\n", needle="cfg.yaml"),
        Case("config missing", "config", ["train", "--method", "scaffold", "--scene", "{scene}", "--out", "{tmp}/out",
                                          "--config", "{tmp}/missing.yaml", "--device", "cpu", "--quiet"],
             None, "missing.yaml"),
        Case("config is a folder", "config", ["train", "--method", "scaffold", "--scene", "{scene}", "--out",
                                              "{tmp}/out", "--config", "{tmp}", "--device", "cpu", "--quiet"],
             None, "is a folder"),
    ]


# -- command-line options --------------------------------------------------------------------------------
def _train(*extra: str, out: str = "{tmp}/out") -> list[str]:
    return ["train", "--method", "scaffold", "--scene", "{scene}", "--out", out, "--iterations", "1",
            "--config", "{cfg}", "--device", "cpu", "--quiet", *extra]


def _link_null(ctx: Ctx) -> None:
    os.symlink("/dev/null", ctx.tmp / "null")


def _a_file(ctx: Ctx) -> None:
    (ctx.tmp / "file").write_text("not a folder")


def _nothing_written(*names: str):
    def check(ctx: Ctx) -> str | None:
        for name in names:
            if (ctx.tmp / name).exists():
                return f"{name} was written"
        return None
    return check


def _cli_cases() -> list[Case]:
    c = []

    def add(id, argv, needle=None, setup=None, check=None):
        c.append(Case(id, "cli", argv, setup, needle, check))

    add("train --device bogus", _train("--device", "bogus"), "bogus")
    add("train --device cuda:x", _train("--device", "cuda:x"), "cuda:x")
    add("train --seed -1", _train("--seed", "-1"), "--seed")
    add("train --seed 2^70", _train("--seed", str(2**70)), "--seed")
    add("train --seed text", _train("--seed", "abc"), "--seed")
    add("train --iterations 0", _train("--iterations", "0"), "--iterations")
    add("train --lmbda -1", ["train", "--method", "hac", "--scene", "{scene}", "--out", "{tmp}/out", "--iterations",
                             "1", "--config", "{cfg}", "--device", "cpu", "--quiet", "--lmbda", "-1"], "--lmbda")
    add("train --lmbda nan", ["train", "--method", "hac", "--scene", "{scene}", "--out", "{tmp}/out", "--iterations",
                              "1", "--config", "{cfg}", "--device", "cpu", "--quiet", "--lmbda", "nan"], "--lmbda")
    add("train --lmbda scaffold", _train("--lmbda", "0.01"), "lmbda")
    add("train --method unknown", ["train", "--method", "nosuch", "--scene", "{scene}", "--out", "{tmp}/out"], "nosuch")
    add("train --out existing file", _train(out="{tmp}/file"), "file", _a_file)
    add("train --out /dev/null", _train(out="/dev/null"), "/dev/null")
    add("train --out link to /dev/null", _train(out="{null}"), "null", _link_null)
    add("train --out under a file", _train(out="{tmp}/file/run"), "file", _a_file)
    add("train --out unwritable", _train(out="/sys/predictgs-bad-input/run"), "/sys")
    add("train --scene missing", ["train", "--method", "scaffold", "--scene", "{tmp}/nope", "--out", "{tmp}/out",
                                  "--device", "cpu"], "nope", None, _nothing_written("out"))
    add("train --scene a file", ["train", "--method", "scaffold", "--scene", "{tmp}/file", "--out", "{tmp}/out",
                                 "--device", "cpu"], "file", _a_file, _nothing_written("out"))
    add("train --max-width 0", _train("--max-width", "0"), "--max-width")
    add("train --downscale 0", _train("--resolution", "factor", "--downscale", "0"), "downscale")
    add("train --downscale nan", _train("--resolution", "factor", "--downscale", "nan"), "downscale")
    add("train --llffhold text", _train("--llffhold", "abc"), "--llffhold")
    add("train --resolution bogus", _train("--resolution", "8k"), "--resolution")
    add("train --images-folder empty", _train("--images-folder", ""), "images_folder")
    add("train --config missing", _train("--config", "{tmp}/none.yaml"), "none.yaml")
    add("synth --seed -1", ["synth", "--family", "object", "--seed", "-1", "--out", "{tmp}/syn", "--width", "16",
                            "--height", "12", "--views", "2", "--quiet"], "seed", None, _nothing_written("syn"))
    add("synth --seed 2^70", ["synth", "--family", "object", "--seed", str(2**70), "--out", "{tmp}/syn", "--width",
                              "16", "--height", "12", "--views", "2", "--quiet"], "seed", None, _nothing_written("syn"))
    add("synth --width 0", ["synth", "--family", "object", "--out", "{tmp}/syn", "--width", "0"], "--width")
    add("synth --width 100000", ["synth", "--family", "object", "--out", "{tmp}/syn", "--width", "100000",
                                 "--quiet"], "width", None, _nothing_written("syn"))
    add("synth --views 1", ["synth", "--family", "object", "--out", "{tmp}/syn", "--views", "1", "--quiet"], "views",
        None, _nothing_written("syn"))
    add("synth --family moon", ["synth", "--family", "moon", "--out", "{tmp}/syn"], "moon")
    add("synth --out existing file", ["synth", "--family", "object", "--out", "{tmp}/file", "--width", "16",
                                      "--height", "12", "--views", "2", "--quiet"], "file", _a_file)
    add("synth --out /dev/null", ["synth", "--family", "object", "--out", "/dev/null", "--width", "16", "--height",
                                  "12", "--views", "2", "--quiet"], "/dev/null")
    add("synth --out under a file", ["synth", "--family", "object", "--out", "{tmp}/file/scene", "--width", "16",
                                     "--height", "12", "--views", "2", "--quiet"], "file", _a_file)
    add("synth --out unwritable", ["synth", "--family", "object", "--out", "/sys/predictgs-bad-input", "--width",
                                   "16", "--height", "12", "--views", "2", "--quiet"], "/sys")
    add("encode --chunk-anchors 70000", ["encode", "{run}", "-o", "{tmp}/x.pgs", "--no-eval", "--chunk-anchors",
                                         "70000"], "--chunk-anchors", None, _nothing_written("x.pgs"))
    add("encode --chunk-anchors 0", ["encode", "{run}", "-o", "{tmp}/x.pgs", "--chunk-anchors", "0"], "--chunk-anchors")
    add("encode -o a folder", ["encode", "{run}", "-o", "{tmp}", "--no-eval"], str("--output"))
    add("encode -o link to /dev/null", ["encode", "{run}", "-o", "{null}", "--no-eval"], "null", _link_null)
    add("encode -o under a file", ["encode", "{run}", "-o", "{tmp}/file/x.pgs", "--no-eval"], "file", _a_file)
    add("encode -o unwritable", ["encode", "{run}", "-o", "/sys/predictgs-bad-input/x.pgs", "--no-eval"], "/sys")
    add("encode run missing", ["encode", "{tmp}/norun", "-o", "{tmp}/x.pgs"], "norun", None, _nothing_written("x.pgs"))
    add("encode run is a file", ["encode", "{tmp}/file", "-o", "{tmp}/x.pgs"], "file", _a_file,
        _nothing_written("x.pgs"))
    add("encode --device bogus", ["encode", "{run}", "-o", "{tmp}/x.pgs", "--device", "gpu0"], "gpu0", None,
        _nothing_written("x.pgs"))
    add("encode --mlp-precision fp8", ["encode", "{run}", "-o", "{tmp}/x.pgs", "--mlp-precision", "fp8"],
        "--mlp-precision")
    add("decode file missing", ["decode", "{tmp}/none.pgs", "-o", "{tmp}/out"], "none.pgs", None,
        _nothing_written("out"))
    add("decode file is a folder", ["decode", "{tmp}", "-o", "{tmp}/out"], None, None, _nothing_written("out"))
    add("decode -o existing file", ["decode", "{pgs}", "-o", "{tmp}/file"], "file", _a_file)
    add("decode -o /dev/null", ["decode", "{pgs}", "-o", "/dev/null"], "/dev/null")
    add("decode -o under a file", ["decode", "{pgs}", "-o", "{tmp}/file/out"], "file", _a_file)
    add("decode -o unwritable", ["decode", "{pgs}", "-o", "/sys/predictgs-bad-input"], "/sys")
    add("eval --device bogus", ["eval", "{decoded}", "--scene", "{scene}", "--device", "tpu", "--no-lpips"], "tpu")
    add("eval --scene missing", ["eval", "{decoded}", "--scene", "{tmp}/nope", "--device", "cpu", "--no-lpips"], "nope")
    add("eval --fps-seconds 0", ["eval", "{decoded}", "--scene", "{scene}", "--fps-seconds", "0"], "--fps-seconds")
    add("eval dir missing", ["eval", "{tmp}/none", "--scene", "{scene}", "--device", "cpu", "--no-lpips"], "none")
    add("eval a run dir", ["eval", "{run}", "--scene", "{scene}", "--device", "cpu", "--no-lpips"], "decode")
    add("scene-info --max-width -1", ["scene-info", "{scene}", "--max-width", "-1"], "--max-width")
    add("scene-info --downscale 0", ["scene-info", "{scene}", "--resolution", "factor", "--downscale", "0"],
        "downscale")
    add("scene-info --llffhold 1", ["scene-info", "{scene}", "--llffhold", "1"], "llffhold")
    return c


# -- run directories ------------------------------------------------------------------------------------
class _Exploit:
    """Pickles as a call to exec: a loader that runs it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _hostile_checkpoint(ctx: Ctx) -> None:
    import torch

    torch.save({"format": "predictgs-checkpoint", "version": 2, "model": _Exploit(ctx.marker)},
               ctx.run() / "checkpoint.pt")


def _hostile_decoded(ctx: Ctx) -> None:
    import torch

    torch.save({"format": "predictgs-decoded-model", "version": 2, "state": _Exploit(ctx.marker)},
               ctx.decoded() / "model.pt")


def _old_checkpoint(ctx: Ctx) -> None:
    """A checkpoint of the layout before format/version keys, with numpy integers in it."""
    import torch

    torch.save({"iteration": np.int64(2), "model": {"x": torch.zeros(2)}, "rng": np.random.get_state()},
               ctx.run() / "checkpoint.pt")


def _write_run(name: str, data: bytes | str):
    def setup(ctx: Ctx) -> None:
        path = ctx.run() / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return setup


def _edit_run_config(edit):
    def setup(ctx: Ctx) -> None:
        path = ctx.run() / "config.yaml"
        path.write_text(yaml.safe_dump(edit(yaml.safe_load(path.read_text()))))
    return setup


def _remove(path_of):
    def setup(ctx: Ctx) -> None:
        path = path_of(ctx)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def _no_marker_or_pgs(ctx: Ctx) -> str | None:
    if ctx.marker.exists():
        return "code from the file ran"
    return _nothing_written("x.pgs")(ctx)


def _rundir_cases() -> list[Case]:
    encode = ["encode", "{r}", "-o", "{tmp}/x.pgs", "--no-eval"]
    encode_eval = ["encode", "{r}", "-o", "{tmp}/x.pgs", "--device", "cpu"]
    resume = ["train", "--method", "scaffold", "--scene", "{scene}", "--out", "{r}", "--iterations", "2", "--config",
              "{cfg}", "--device", "cpu", "--quiet"]
    evaluate = ["eval", "{d}", "--scene", "{scene}", "--device", "cpu", "--no-lpips", "--fps-seconds", "0.01"]
    c = []

    def add(id, argv, setup, needle=None, check=_no_marker_or_pgs):
        c.append(Case(id, "rundir", argv, setup, needle, check))

    add("checkpoint hostile pickle, encode", encode, _hostile_checkpoint, "checkpoint.pt")
    add("checkpoint hostile pickle, resume", resume, _hostile_checkpoint, "checkpoint.pt")
    add("checkpoint old format", encode, _old_checkpoint, "retrain")
    add("checkpoint empty", encode, _write_run("checkpoint.pt", b""), "checkpoint.pt")
    add("checkpoint garbage", encode, _write_run("checkpoint.pt", b"\x80\x04garbage"), "checkpoint.pt")
    add("checkpoint is a folder", encode, lambda ctx: (_remove(lambda c: c.run() / "checkpoint.pt")(ctx),
                                                       (ctx.run() / "checkpoint.pt").mkdir()), "checkpoint.pt")
    add("checkpoint missing", encode, _remove(lambda ctx: ctx.run() / "checkpoint.pt"), "checkpoint.pt")
    add("checkpoint of another method", ["encode", "{r}", "-o", "{tmp}/x.pgs", "--no-eval"],
        _edit_run_config(lambda spec: {**spec, "method": "hac"}), "checkpoint.pt")
    add("metrics.json empty", encode, _write_run("metrics.json", ""), "metrics.json")
    add("metrics.json a list", encode, _write_run("metrics.json", "[1, 2]"), "metrics.json")
    add("metrics.json not UTF-8", encode, _write_run("metrics.json", b"{\"psnr\": \xff}"), "metrics.json")
    add("metrics.json is a folder", encode, lambda ctx: (_remove(lambda c: c.run() / "metrics.json")(ctx),
                                                         (ctx.run() / "metrics.json").mkdir()), "metrics.json")
    add("config.yaml missing", encode, _remove(lambda ctx: ctx.run() / "config.yaml"), "config.yaml")
    add("config.yaml not YAML", encode, _write_run("config.yaml", "method: [scaffold\n"), "config.yaml")
    add("config.yaml a list", encode, _write_run("config.yaml", "- scaffold\n"), "config.yaml")
    add("config.yaml unknown method", encode, _edit_run_config(lambda s: {**s, "method": "nosuch"}), "nosuch")
    add("config.yaml bad model value", encode, _edit_run_config(lambda s: {**s, "model": {**s["model"],
                                                                                          "feat_dim": -3}}),
        "feat_dim")
    add("config.yaml no protocol, eval", encode_eval, _edit_run_config(lambda s: {k: v for k, v in s.items()
                                                                                 if k != "protocol"}), "protocol")
    add("config.yaml bad protocol, eval", encode_eval, _edit_run_config(lambda s: {**s, "protocol": {"llffhold": "x"}}),
        "llffhold")
    add("config.yaml scene missing, eval", encode_eval, _edit_run_config(lambda s: {**s, "scene": "/no/such/scene"}),
        "/no/such/scene")
    add("config.yaml bad train device, eval", ["encode", "{r}", "-o", "{tmp}/x.pgs"],
        _edit_run_config(lambda s: {**s, "train": {**s["train"], "device": "bogus"}}), "bogus")
    add("resume with a changed config", resume, _edit_run_config(lambda s: {**s, "benchmark": "other"}), "restart")
    add("decoded model.pt hostile pickle", evaluate, _hostile_decoded, "model.pt")
    add("decoded model.pt garbage", evaluate, lambda ctx: (ctx.decoded() / "model.pt").write_bytes(b"PK\x03\x04"),
        "model.pt")
    add("decoded model.pt empty", evaluate, lambda ctx: (ctx.decoded() / "model.pt").write_bytes(b""), "model.pt")
    add("decoded config.yaml missing", evaluate, _remove(lambda ctx: ctx.decoded() / "config.yaml"), "config.yaml")
    add("decoded config.yaml not YAML", evaluate,
        lambda ctx: (ctx.decoded() / "config.yaml").write_text("run: {protocol: [\n"), "config.yaml")
    add("decoded config.yaml bad protocol", evaluate, lambda ctx: _edit_decoded_config(ctx, {"protocol": {"bad": 1}}),
        "bad")
    add("decoded config.yaml run a list", evaluate, lambda ctx: _edit_decoded_config(ctx, None, run=[1]), "run")
    return c


def _edit_decoded_config(ctx: Ctx, run_update, run=None) -> None:
    path = ctx.decoded() / "config.yaml"
    data = yaml.safe_load(path.read_text())
    if run is not None:
        data["run"] = run
    else:
        data["run"] = {**(data.get("run") or {}), **run_update}
    path.write_text(yaml.safe_dump(data))


# -- crafted bitstreams (valid CRCs) ------------------------------------------------------------------------
def parse_pgs(data: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """(version, method, header JSON bytes, [(section name, payload)]) of a well-formed .pgs file, read
    with the layout of docs/bitstream.md (independently of the package's reader)."""
    pos = 8
    version, name_length = struct.unpack_from("<HB", data, pos)
    pos += 3
    method = data[pos:pos + name_length]
    pos += name_length
    (header_length,) = struct.unpack_from("<I", data, pos)
    header = data[pos + 4:pos + 4 + header_length]
    pos += 4 + header_length + 4
    (count,) = struct.unpack_from("<H", data, pos)
    pos += 2
    entries = []
    for _ in range(count):
        length = data[pos]
        name = data[pos + 1:pos + 1 + length]
        size, _crc = struct.unpack_from("<QI", data, pos + 1 + length)
        entries.append((name, size))
        pos += 1 + length + 12
    pos += 4
    sections = []
    for name, size in entries:
        sections.append((name, data[pos:pos + size]))
        pos += size
    return version, method, header, sections


def build_pgs(version: int, method: bytes, header: bytes, sections: list[tuple[bytes, bytes]]) -> bytes:
    """A .pgs file with valid CRCs around whatever it is given."""
    crc = lambda b: zlib.crc32(b) & 0xFFFFFFFF  # noqa: E731
    out = bytearray(b"\x89PGS\r\n\x1a\n" + struct.pack("<HB", version, len(method)) + method)
    out += struct.pack("<I", len(header)) + header + struct.pack("<I", crc(header))
    table = bytearray(struct.pack("<H", len(sections)))
    for name, payload in sections:
        table += struct.pack("<B", len(name)) + name + struct.pack("<QI", len(payload), crc(payload))
    out += table + struct.pack("<I", crc(bytes(table)))
    for _, payload in sections:
        out += payload
    return bytes(out)


def _crafted(edit):
    """decode of the base file after ``edit(header dict or bytes, sections) -> (header, sections)``."""
    def setup(ctx: Ctx) -> None:
        version, method, header, sections = parse_pgs(ctx.base.pgs.read_bytes())
        new_header, new_sections = edit(json.loads(header), list(sections))
        if not isinstance(new_header, bytes):
            new_header = json.dumps(new_header).encode()
        (ctx.tmp / "crafted.pgs").write_bytes(build_pgs(version, method, new_header, new_sections))
    return setup


def _header_set(*path_and_value):
    *path, value = path_and_value

    def edit(header, sections):
        target = header
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return header, sections
    return edit


def _all_ints(value):
    def edit(header, sections):
        return {k: (value if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in header.items()}, sections
    return edit


def _bitstream_cases() -> list[Case]:
    decode = ["decode", "{tmp}/crafted.pgs", "-o", "{tmp}/out"]
    c = []

    def add(id, setup, needle=None):
        c.append(Case(id, "bitstream", decode, setup, needle, _nothing_written("out")))

    add("header nested 100,000 levels", _crafted(lambda h, s: (b"[" * 100_000 + b"]" * 100_000, s)), "header")
    add("model config nested 100,000 levels",
        _crafted(lambda h, s: (b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", s)), "header")
    add("header a list", _crafted(lambda h, s: (b"[1, 2, 3]", s)), "header")
    add("header NaN", _crafted(_header_set("extent", float("nan"))), "extent")
    add("every header integer 2^40", _crafted(_all_ints(2**40)), "header")
    add("every header integer -1", _crafted(_all_ints(-1)), "header")
    add("huge shapes", _crafted(lambda h, s: ({**h, "model": {**h["model"], "feat_dim": 4096, "n_offsets": 64}}, s)),
        None)
    add("model feat_dim -3", _crafted(_header_set("model", "feat_dim", -3)), "feat_dim")
    add("header model unknown key", _crafted(_header_set("model", "colour", 1)), "colour")
    add("sections reordered", _crafted(lambda h, s: (h, s[::-1])), "section")
    add("section duplicated", _crafted(lambda h, s: (h, s + s[-1:])), "section")
    add("section dropped", _crafted(lambda h, s: (h, s[:-1])), "section")
    add("sections emptied", _crafted(lambda h, s: (h, [(n, b"") for n, _ in s])), "section")
    add("payloads swapped", _crafted(lambda h, s: (h, [(s[0][0], s[1][1]), (s[1][0], s[0][1]), *s[2:]])), "section")
    add("section name not ASCII", _crafted(lambda h, s: (h, [(b"\xff\xfe", s[0][1]), *s[1:]])), "section")
    add("empty file", lambda ctx: (ctx.tmp / "crafted.pgs").write_bytes(b""), "magic")
    add("magic only", lambda ctx: (ctx.tmp / "crafted.pgs").write_bytes(b"\x89PGS\r\n\x1a\n"), "preamble")
    return c


def _damaged_last_section(ctx: Ctx) -> None:
    """A base file whose last section has one flipped byte (its CRC no longer matches); the coder's loader
    is replaced by a recorder, so that the check can tell whether any decoding work began."""
    import predictgs.pipeline.codec as pipeline

    version, method, header, sections = parse_pgs(ctx.base.pgs.read_bytes())
    data = bytearray(ctx.base.pgs.read_bytes())
    data[len(data) - len(sections[-1][1]) // 2] ^= 0xFF
    (ctx.tmp / "crafted.pgs").write_bytes(bytes(data))
    calls = []
    original = pipeline.warm_up
    pipeline.warm_up = lambda: calls.append(1) or original()
    ctx.coder_calls = calls
    ctx.cleanups.append(lambda: setattr(pipeline, "warm_up", original))


def _no_coder_loaded(ctx: Ctx) -> str | None:
    if getattr(ctx, "coder_calls", None):
        return "the entropy coder was loaded before the damaged file was refused"
    return _nothing_written("out")(ctx)


def _whole_file_cases() -> list[Case]:
    return [Case("damaged last section, refused before any decoding work", "bitstream",
                 ["decode", "{tmp}/crafted.pgs", "-o", "{tmp}/out"], _damaged_last_section, "CRC", _no_coder_loaded)]


# -- outputs that would overwrite inputs -------------------------------------------------------------------
def _unchanged(*paths: str):
    """After the case: these files (relative to the case folder) hold what the base files held, and nothing
    new was written beside them."""
    def check(ctx: Ctx) -> str | None:
        sources = {"run": ctx.base.run, "scene": ctx.base.scene, "decoded": ctx.base.decoded, "wfrun": ctx.base.workflow_run}
        for relative in paths:
            path = ctx.tmp / relative
            top, _, rest = relative.partition("/")
            source = sources[top] / rest if top in sources else None
            if source is not None and (not path.exists() or path.read_bytes() != source.read_bytes()):
                return f"{relative} was overwritten"
        return None
    return check


def _text_file(name: str, text: str = "notes, not a bitstream\n"):
    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return setup


def _kept(name: str, text: str = "notes, not a bitstream\n"):
    def check(ctx: Ctx) -> str | None:
        path = ctx.tmp / name
        if not path.is_file() or path.read_bytes() != text.encode():
            return f"{name} was overwritten or removed"
        return None
    return check


def _all_of(*checks):
    def check(ctx: Ctx) -> str | None:
        for one in checks:
            problem = one(ctx)
            if problem:
                return problem
        return None
    return check


def _copies(*makers):
    def setup(ctx: Ctx) -> None:
        for make in makers:
            make(ctx)
    return setup


def _evaluated_decoded_folder(ctx: Ctx) -> None:
    """A decoded and evaluated folder of another bitstream (its recorded source differs from {pgs})."""
    shutil.copytree(ctx.base.workflow_run / "decoded", ctx.tmp / "evaluated")
    config = ctx.tmp / "evaluated" / "config.yaml"
    info = yaml.safe_load(config.read_text())
    info["source_crc32"] = (info["source_crc32"] + 1) % 2**32
    config.write_text(yaml.safe_dump(info))


def _same_bitstream_evaluated_folder(ctx: Ctx) -> None:
    shutil.copytree(ctx.base.workflow_run / "decoded", ctx.tmp / "evaluated")


def _evaluation_kept(ctx: Ctx) -> str | None:
    folder = ctx.tmp / "evaluated"
    if not (folder / "metrics.json").is_file() or not (folder / "per_view.json").is_file():
        return "decoding the same bitstream again lost its evaluation"
    if not (folder / "model.pt").is_file():
        return "no model.pt was written"
    return None


def _stale_results_removed(ctx: Ctx) -> str | None:
    folder = ctx.tmp / "evaluated"
    if (folder / "metrics.json").exists() or (folder / "per_view.json").exists():
        return "the previous model's metrics.json survived beside the new model"
    if not (folder / "model.pt").is_file():
        return "no model.pt was written"
    return None


def _output_cases() -> list[Case]:
    c = []

    def add(id, argv, setup, needle, check, expect_ok=False):
        c.append(Case(id, "outputs", argv, setup, needle, check, expect_ok))

    run, scene, decoded = Ctx.run, Ctx.scene, Ctx.decoded
    for name in ("checkpoint.pt", "config.yaml", "metrics.json", "train.log"):
        add(f"encode -o RUN/{name}", ["encode", "{r}", "-o", f"{{r}}/{name}", "--no-eval"], run, name,
            _unchanged(f"run/{name}"))
    add("encode -o a scene image", ["encode", "{r}", "-o", "{s}/images/view_000.png", "--no-eval"],
        _copies(run, scene), "scene folder", _unchanged("scene/images/view_000.png"))
    add("encode -o into a decoded folder", ["encode", "{r}", "-o", "{d}/model.pt", "--no-eval"], _copies(run, decoded),
        "decoded model folder", _unchanged("decoded/model.pt"))
    add("encode -o an existing non-bitstream file", ["encode", "{r}", "-o", "{tmp}/notes.txt", "--no-eval"],
        _copies(run, _text_file("notes.txt")), "notes.txt", _kept("notes.txt"))
    add("decode -o RUN", ["decode", "{pgs}", "-o", "{r}"], run, "run folder",
        _unchanged("run/config.yaml", "run/checkpoint.pt"))
    add("decode -o a scene folder", ["decode", "{pgs}", "-o", "{s}"], scene, "scene folder",
        _all_of(_unchanged("scene/sparse/0/cameras.txt"), _nothing_written("scene/model.pt")))
    add("decode -o ''", ["decode", "{pgs}", "-o", ""], None, "empty path",
        _nothing_written("model.pt", "config.yaml"))
    add("decode -o a folder of other files", ["decode", "{pgs}", "-o", "{tmp}/docs"], _text_file("docs/notes.txt"),
        "docs", _all_of(_kept("docs/notes.txt"), _nothing_written("docs/model.pt")))
    add("train --out another scene folder", _train(out="{s}"), scene, "scene folder",
        _nothing_written("scene/config.yaml", "scene/metrics.json"))
    add("train --out the scene it trains on", ["train", "--method", "scaffold", "--scene", "{s}", "--out", "{s}",
                                               "--iterations", "1", "--config", "{cfg}", "--device", "cpu", "--quiet"],
        scene, "scene folder", _nothing_written("scene/config.yaml", "scene/checkpoint.pt"))
    add("train --out inside the scene", ["train", "--method", "scaffold", "--scene", "{s}", "--out", "{s}/sparse/0",
                                         "--iterations", "1", "--config", "{cfg}", "--device", "cpu", "--quiet"],
        scene, "scene folder", _nothing_written("scene/sparse/0/config.yaml"))
    add("train --out a decoded folder", _train(out="{d}"), decoded, "decoded model folder",
        _all_of(_unchanged("decoded/config.yaml"), _nothing_written("decoded/checkpoint.pt")))
    add("synth --out a run folder", ["synth", "--family", "object", "--out", "{r}", "--width", "16", "--height", "12",
                                     "--views", "4", "--quiet"], run, "run folder",
        _all_of(_unchanged("run/config.yaml"), _nothing_written("run/images", "run/sparse")))
    add("synth --out a decoded folder", ["synth", "--family", "object", "--out", "{d}", "--width", "16", "--height",
                                         "12", "--views", "4", "--quiet"], decoded, "decoded model folder",
        _nothing_written("decoded/images", "decoded/sparse"))
    add("decode into an evaluated folder of another bitstream: its metrics go",
        ["decode", "{pgs}", "-o", "{tmp}/evaluated"], _evaluated_decoded_folder, None, _stale_results_removed,
        expect_ok=True)
    add("decode the same bitstream again: its evaluation stays", ["decode", "{pgs}", "-o", "{tmp}/evaluated"],
        _same_bitstream_evaluated_folder, None, _evaluation_kept, expect_ok=True)
    return c


# -- locks: one writer per run and decoded folder ---------------------------------------------------------
HOLDER_PID = 4242  # the pid a held lock names (the harness holds it, in-process)


def _held(folder_of):
    """The folder's lock held by this process through its own open file (flock locks of two open files
    conflict even within one process), with a holder's details in it."""
    def setup(ctx: Ctx) -> None:
        import fcntl
        import socket

        folder = folder_of(ctx)
        handle = os.open(folder / ".predictgs.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(handle, json.dumps({"pid": HOLDER_PID, "host": socket.gethostname(),
                                     "command": "predictgs train (the harness, holding the lock)",
                                     "since": "2026-01-01T00:00:00"}).encode())
        ctx.cleanups.append(lambda: os.close(handle))
    return setup


def _left_behind(ctx: Ctx) -> None:
    """A lock file of a process that was killed: its details, no flock held."""
    import socket

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (ctx.run() / ".predictgs.lock").write_text(json.dumps({"pid": int(finished.stdout), "host": socket.gethostname(),
                                                           "command": "predictgs train (killed)", "since": "x"}))


def _lock_released(ctx: Ctx) -> str | None:
    path = ctx.tmp / "run" / ".predictgs.lock"
    if path.exists() and path.read_text().strip():
        return "the stale lock was not taken over and released"
    return None


def _lock_cases() -> list[Case]:
    resume = ["train", "--method", "scaffold", "--scene", "{scene}", "--out", "{r}", "--iterations", "2", "--config",
              "{cfg}", "--device", "cpu", "--quiet"]
    evaluate = ["eval", "{d}", "--scene", "{scene}", "--device", "cpu", "--no-lpips", "--fps-seconds", "0.01"]
    run_folder, decoded_folder = (lambda ctx: ctx.run()), (lambda ctx: ctx.decoded())
    return [
        Case("train while another process holds the run", "locks", resume, _held(run_folder), str(HOLDER_PID),
             _unchanged("run/checkpoint.pt", "run/metrics.json")),
        Case("train --restart while another process holds the run", "locks", resume + ["--restart"],
             _held(run_folder), str(HOLDER_PID), _unchanged("run/checkpoint.pt", "run/metrics.json")),
        Case("encode while another process holds the run", "locks", ["encode", "{r}", "-o", "{tmp}/x.pgs", "--no-eval"],
             _held(run_folder), str(HOLDER_PID), _all_of(_nothing_written("x.pgs"), _unchanged("run/metrics.json"))),
        Case("decode while another process holds the folder", "locks", ["decode", "{pgs}", "-o", "{d}"],
             _held(decoded_folder), str(HOLDER_PID), _unchanged("decoded/model.pt", "decoded/config.yaml")),
        Case("eval while another process holds the folder", "locks", evaluate, _held(decoded_folder),
             str(HOLDER_PID), _nothing_written("decoded/metrics.json")),
        Case("a lock left by a killed process is taken over", "locks", resume, _left_behind, None, _lock_released,
             expect_ok=True),
    ]


# -- numbers: no parser traceback, duplicate keys refused ---------------------------------------------------
HUGE = "9" * 5000  # Python refuses int() of more than 4300 digits
LIGHT_TRAIN = "train:\n  lpips: false\n  checkpoints: 1\n"  # what _config_case merges into a mapping


def _edit_text_file(path_of, old: str, new: str):
    def setup(ctx: Ctx) -> None:
        path = path_of(ctx)
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))
    return setup


def _write_text(path_of, text: str):
    def setup(ctx: Ctx) -> None:
        path_of(ctx).write_text(text)
    return setup


def _number_cases() -> list[Case]:
    encode = ["encode", "{r}", "-o", "{tmp}/x.pgs", "--no-eval"]
    evaluate = ["eval", "{d}", "--scene", "{scene}", "--device", "cpu", "--no-lpips", "--fps-seconds", "0.01"]
    c = [
        _config_case("--config integer of 5000 digits (train.seed)", f"train:\n  seed: {HUGE}\n",
                     needle="train.seed"),
        _config_case("--config negative integer of 5000 digits (model.feat_dim)", f"model:\n  feat_dim: -{HUGE}\n",
                     needle="model.feat_dim"),
        _config_case("--config integer of 400 digits for a float (model.voxel_size)",
                     f"model:\n  voxel_size: 1{'0' * 400}\n", needle="model.voxel_size"),
        _config_case("--config hexadecimal integer of 9000 digits (train.seed)", f"train:\n  seed: 0x{'f' * 9000}\n",
                     needle="train.seed"),
        _config_case("--config duplicate key", f"{LIGHT_TRAIN}model:\n  feat_dim: 8\n  feat_dim: 16\n", needle="feat_dim"),
        _config_case("--config duplicate section", f"{LIGHT_TRAIN}model:\n  feat_dim: 8\nmodel:\n  n_offsets: 4\n",
                     needle="model"),
    ]
    for case in c:
        case.category = "numbers"

    def add(id, argv, setup, needle, check=None):
        c.append(Case(id, "numbers", argv, setup, needle, check))

    add("run config.yaml integer of 5000 digits, encode", encode,
        _edit_text_file(lambda ctx: ctx.run() / "config.yaml", "seed: 0", f"seed: {HUGE}"), "config.yaml",
        _nothing_written("x.pgs"))
    add("run config.yaml duplicate key, encode", encode,
        _edit_text_file(lambda ctx: ctx.run() / "config.yaml", "method: scaffold", "method: scaffold\nmethod: hac"),
        "config.yaml", _nothing_written("x.pgs"))
    add("run metrics.json integer of 5000 digits, encode", encode,
        _edit_text_file(lambda ctx: ctx.run() / "metrics.json", '"seed": 0', f'"seed": {HUGE}'), "metrics.json",
        _nothing_written("x.pgs"))
    add("run metrics.json duplicate key, encode", encode,
        _edit_text_file(lambda ctx: ctx.run() / "metrics.json", '"seed": 0', '"seed": 0, "seed": 1'), "metrics.json",
        _nothing_written("x.pgs"))
    add("decoded config.yaml integer of 5000 digits, eval", evaluate,
        _edit_text_file(lambda ctx: ctx.decoded() / "config.yaml", "llffhold: 8", f"llffhold: {HUGE}"), "llffhold",
        _nothing_written("decoded/metrics.json"))
    add("decoded config.yaml duplicate key, eval", evaluate,
        _edit_text_file(lambda ctx: ctx.decoded() / "config.yaml", "llffhold: 8", "llffhold: 8\n    llffhold: 4"),
        "llffhold", _nothing_written("decoded/metrics.json"))
    add("transforms_train.json integer of 5000 digits", SCENE_INFO,
        _huge_json_scene(), "transforms_train.json")
    add("transforms.json duplicate key", SCENE_INFO, _duplicate_json_scene(), "fl_x")
    add("bitstream header integer of 5000 digits", ["decode", "{tmp}/crafted.pgs", "-o", "{tmp}/out"],
        _crafted(lambda h, s: (json.dumps(h).replace('"num_anchors": ', f'"num_anchors": {HUGE}, "x": ', 1).encode(),
                               s)), "header", _nothing_written("out"))
    add("bitstream header duplicate key", ["decode", "{tmp}/crafted.pgs", "-o", "{tmp}/out"],
        _crafted(lambda h, s: (json.dumps(h)[:-1].encode() + b', "extent": 1.0}', s)), "extent",
        _nothing_written("out"))
    return c


def _huge_json_scene():
    def setup(ctx: Ctx) -> None:
        _json_scene("blender", _meta("w", 40))(ctx)
        path = ctx.scene() / "transforms_train.json"
        path.write_text(path.read_text().replace('"w": 40', f'"w": {HUGE}', 1))
    return setup


def _duplicate_json_scene():
    def setup(ctx: Ctx) -> None:
        _json_scene("ngp")(ctx)
        path = ctx.scene() / "transforms.json"
        path.write_text(path.read_text().replace('"fl_x": ', '"fl_x": 1e9, "fl_x": ', 1))
    return setup


# -- evaluation protocols that would measure the wrong views -----------------------------------------------
def _protocol_cases() -> list[Case]:
    p = lambda **kw: {"protocol": kw}  # noqa: E731
    c = [
        _config_case("--config protocol.llffhold 0", p(llffhold=0), needle="llffhold"),
        _config_case("--config protocol.llffhold -1", p(llffhold=-1), needle="llffhold"),
        _config_case("--config protocol.llffhold 1", p(llffhold=1), needle="llffhold"),
        _config_case("--config protocol.images_folder ../", p(images_folder="../elsewhere"), needle="images_folder"),
    ]
    for case in c:
        case.category = "protocol"
    evaluate = ["eval", "{d}", "--scene", "{scene}", "--device", "cpu", "--no-lpips", "--fps-seconds", "0.01"]

    def add(id, argv, setup, needle, check=None):
        c.append(Case(id, "protocol", argv, setup, needle, check))

    add("train --llffhold 0", _train("--llffhold", "0"), None, "llffhold", _nothing_written("out"))
    add("scene-info --llffhold 0", ["scene-info", "{scene}", "--llffhold", "0"], None, "llffhold")
    add("scene-info --llffhold -8", ["scene-info", "{scene}", "--llffhold", "-8"], None, "llffhold")
    add("eval --llffhold 0", evaluate + ["--llffhold", "0"], Ctx.decoded, "llffhold",
        _nothing_written("decoded/metrics.json"))
    add("run config.yaml protocol.llffhold 0, encode", ["encode", "{r}", "-o", "{tmp}/x.pgs", "--device", "cpu"],
        _edit_run_config(lambda s: {**s, "protocol": {**s["protocol"], "llffhold": 0}}), "llffhold",
        _nothing_written("x.pgs"))
    add("decoded config.yaml protocol.llffhold 0, eval", evaluate,
        lambda ctx: _edit_decoded_config(ctx, {"protocol": {"llffhold": 0}}), "llffhold",
        _nothing_written("decoded/metrics.json"))
    decode = ["decode", "{tmp}/crafted.pgs", "-o", "{tmp}/out"]
    for key, value in (("resolution", "evil"), ("downscale", 0), ("downscale", float("nan")), ("max_width", 0),
                       ("white_background", "yes"), ("llffhold", 0), ("images_folder", "/etc")):
        add(f"bitstream header protocol.{key} {value!r}", decode, _crafted(_header_set("run", "protocol", key, value)),
            key, _nothing_written("out"))
    add("bitstream header run a list", decode, _crafted(_header_set("run", [1, 2])), "run", _nothing_written("out"))
    return c


# -- scene images ------------------------------------------------------------------------------------------
def _replace_image(size=None, mode: str = "RGB", suffix: str = ".png", exif_orientation: int | None = None,
                   name: str = "view_003"):
    """view_003 rewritten: another size, another pixel format or file type, an EXIF orientation tag."""
    def setup(ctx: Ctx) -> None:
        from PIL import Image

        images = ctx.scene() / "images"
        original = images / f"{name}.png"
        with Image.open(original) as im:
            rgb = im.convert("RGB")
        if size is not None:
            rgb = rgb.resize(size)
        if mode == "I":
            image = Image.fromarray(np.asarray(rgb.convert("L"), np.int32) * 1000)
        elif mode == "F":
            image = Image.fromarray(np.asarray(rgb.convert("L"), np.float32) / 255.0)
        else:
            image = rgb.convert(mode)
        original.unlink()
        options = {}
        if exif_orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = exif_orientation
            options["exif"] = exif
        image.save(images / f"{name}{suffix}", **options)
    return setup


def _outside_image(absolute: bool):
    """images.txt names an image outside the scene folder (a real PNG there, so that reading it would work)."""
    def setup(ctx: Ctx) -> None:
        outside = ctx.tmp / "outside"
        outside.mkdir(exist_ok=True)
        shutil.copyfile(ctx.base.scene / "images" / "view_000.png", outside / "view.png")
        name = str(outside / "view.png") if absolute else "../../outside/view.png"
        _edit_colmap("images.txt", 1, 9, name)(ctx)
    return setup


def _duplicate_image(ctx: Ctx) -> None:
    """Two records of images.txt name view_000.png, with different poses."""
    _edit_colmap("images.txt", 1, 9, "view_000.png")(ctx)


def _json_outside(ctx: Ctx) -> None:
    def edit(meta):
        meta["frames"][0]["file_path"] = "../outside/view"
    _json_scene("blender", edit)(ctx)
    (ctx.tmp / "outside").mkdir(exist_ok=True)
    shutil.copyfile(ctx.base.scene / "images" / "view_000.png", ctx.tmp / "outside" / "view.png")


def _blender_shared_frame(ctx: Ctx) -> None:
    """transforms_test.json names a training image."""
    _json_scene("blender")(ctx)
    train = json.loads((ctx.scene() / "transforms_train.json").read_text())
    test = json.loads((ctx.scene() / "transforms_test.json").read_text())
    test["frames"][0]["file_path"] = train["frames"][0]["file_path"]
    (ctx.scene() / "transforms_test.json").write_text(json.dumps(test))


def _image_cases() -> list[Case]:
    c = []

    def add(id, setup, needle, argv=SCENE_INFO):
        c.append(Case(id, "images", list(argv), setup, needle))

    add("image larger than its camera", _replace_image(size=(44, 33)), "view_003.png")
    add("image of another aspect ratio", _replace_image(size=(40, 20)), "view_003.png")
    add("image smaller than its camera, train", _replace_image(size=(20, 15)), "view_003.png", TRAIN_S)
    add("portrait image with EXIF orientation 6", _replace_image(size=(30, 40), suffix=".jpg", exif_orientation=6),
        "orientation")
    add("two image records of one file", _duplicate_image, "view_000.png")
    add("32-bit integer TIFF", _replace_image(mode="I", suffix=".tif"), "32-bit")
    add("32-bit float TIFF", _replace_image(mode="F", suffix=".tif"), "32-bit")
    add("1-bit image", _replace_image(mode="1"), "1-bit")
    add("principal point at 1e9", _edit_colmap("cameras.txt", 0, 6, "1e9"), "principal point")
    add("OPENCV k1 = 1e6", _replace_text("cameras.txt", "1 OPENCV 40 30 31.4 31.4 20 15 1e6 0 0 0\n"), "cameras.txt")
    add("OPENCV p1 = 50", _replace_text("cameras.txt", "1 OPENCV 40 30 31.4 31.4 20 15 0.01 0 50 0\n"), "cameras.txt")
    add("image name outside the scene (../../)", _outside_image(absolute=False), "../../outside/view.png")
    add("image name an absolute path", _outside_image(absolute=True), "outside/view.png")
    add("blender file_path outside the scene", _json_outside, "../outside/view")
    add("blender test frame is a training frame", _blender_shared_frame, "same file")
    add("llff image size differs from the pose", _llff(_set(lambda d: d.__setitem__((slice(None), [4, 9]),
                                                                                   d[:, [4, 9]] * 2))), "view_")
    add("instant-ngp w and h differ from the image", _json_scene("ngp", _meta("w", 80)), "transforms.json")
    add("--images-folder ../ outside the scene", lambda ctx: (ctx.scene(), shutil.copytree(ctx.base.scene / "images",
                                                                                          ctx.tmp / "elsewhere")),
        "images_folder", ["scene-info", "{s}", "--resolution", "3dgs", "--images-folder", "../elsewhere"])
    return c


# -- workflow intermediates -----------------------------------------------------------------------------------
SUMMARY = ["{w}", "--benchmark", "b", "--scene", "s", "--method", "scaffold", "--variant", "default", "--seed", "0"]


def _run_summary_command():
    """run_summary.cli of the checkout under test; for one that has none (before it existed), the same steps
    through its summarize(), whose exceptions escape as they would from the Snakemake job."""
    import importlib

    import predictgs

    scripts = str(Path(predictgs.__file__).resolve().parents[1] / "workflow" / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    module = importlib.import_module("run_summary")
    if hasattr(module, "cli"):
        return module.cli

    def old_cli(argv):
        run = Path(argv[0])
        summary = module.summarize(run / "metrics.json", benchmark="b", scene="s", method="scaffold",
                                   variant="default", seed=0, decoded_path=run / "decoded_metrics.json",
                                   bitstream_path=run / "scene.pgs", warn=lambda message: None)
        module.write_summary(summary, run / "summary.json")
        return 0
    return old_cli


def _edit_workflow_json(name: str, edit):
    def setup(ctx: Ctx) -> None:
        path = ctx.workflow_run() / name
        data = json.loads(path.read_text())
        result = edit(data)
        path.write_text(result if isinstance(result, str) else json.dumps(data))
    return setup


def _reencoded(ctx: Ctx) -> None:
    """The run encoded again (float16 networks: another file), metrics.json updated as encode does, the
    decoded folder and its evaluation left from the previous bitstream."""
    _quiet_main(["encode", ctx.workflow_run(), "-o", ctx.workflow_run() / "scene.pgs", "--no-eval",
                 "--mlp-precision", "fp16"])


def _no_summary(ctx: Ctx) -> str | None:
    return "summary.json was written" if (ctx.tmp / "wfrun" / "summary.json").exists() else None


def _workflow_cases() -> list[Case]:
    c = []

    def add(id, setup, needle):
        c.append(Case(id, "workflow", SUMMARY, setup, needle, _no_summary, runner="run_summary"))

    copy, source = "decoded_metrics.json", "decoded/metrics.json"
    add("decoded_metrics.json psnr edited to 99", _edit_workflow_json(copy, lambda d: d.update(psnr=99.0)), "differs")
    add("decoded_metrics.json psnr 'high'", _edit_workflow_json(copy, lambda d: d.update(psnr="high")), "differs")
    add("decoded_metrics.json not JSON", _edit_workflow_json(copy, lambda d: '{"psnr": 7.7,'), copy)
    add("decoded_metrics.json a list", _edit_workflow_json(copy, lambda d: "[1, 2]"), copy)
    add("decoded_metrics.json integer of 5000 digits",
        _edit_workflow_json(copy, lambda d: json.dumps(d).replace('"psnr": ', f'"psnr": {HUGE}, "was": ', 1)), "psnr")
    add("decoded_metrics.json duplicate key",
        _edit_workflow_json(copy, lambda d: json.dumps(d).replace('"psnr": ', '"psnr": 99.0, "psnr": ', 1)),
        "duplicate key")
    add("decoded/metrics.json psnr 'high' (and its copy)",
        _copies(_edit_workflow_json(copy, lambda d: d.update(psnr="high")),
                _edit_workflow_json(source, lambda d: d.update(psnr="high"))), "psnr")
    add("decoded/metrics.json missing", lambda ctx: (ctx.workflow_run() / source).unlink(), "missing")
    add("decoded/ left from a previous bitstream", _reencoded, "another bitstream")
    add("scene.pgs replaced: same size, other bytes",
        lambda ctx: (ctx.workflow_run() / "scene.pgs").write_bytes((ctx.workflow_run() / "scene.pgs").read_bytes()[::-1]),
        "CRC32")
    add("scene.pgs replaced by a shorter file", lambda ctx: (ctx.workflow_run() / "scene.pgs").write_bytes(b"\x89PGS"),
        "size_bytes")
    add("metrics.json psnr 'high'", _edit_workflow_json("metrics.json", lambda d: d.update(psnr="high")), "psnr")
    add("metrics.json not JSON", _edit_workflow_json("metrics.json", lambda d: "{"), "metrics.json")
    add("metrics.json size_bytes edited", _edit_workflow_json("metrics.json",
                                                               lambda d: d.update(size_bytes=d["size_bytes"] // 2)),
        "size_bytes")
    return c


def all_cases() -> list[Case]:
    return (_scene_cases() + _config_cases() + _cli_cases() + _rundir_cases() + _bitstream_cases()
            + _whole_file_cases() + _output_cases() + _lock_cases() + _number_cases() + _protocol_cases()
            + _image_cases() + _workflow_cases())


# -- running a case -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str  # clean | traceback | accepted
    message: str = ""
    detail: str = ""


def _old_checkout() -> bool:
    try:
        import predictgs.runs  # noqa: F401  (the module exists from the restructure on)
    except ImportError:
        return True
    return False


def run_case(case: Case, base: Base, tmp: Path) -> Outcome:
    ctx = Ctx(base, tmp, _old_checkout())
    cwd = os.getcwd()
    try:
        os.chdir(ctx.tmp)  # a command that writes into "." (decode -o '') writes into the case's folder
        return _run_case(case, ctx)
    finally:
        os.chdir(cwd)
        for cleanup in reversed(ctx.cleanups):
            cleanup()


def _run_case(case: Case, ctx: Ctx) -> Outcome:
    from predictgs.cli import main

    if case.setup is not None:
        case.setup(ctx)
    argv = [str(a).format(**ctx.fields) for a in case.argv]
    command = main if case.runner == "predictgs" else _run_summary_command()
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("always")
            code = command(argv)
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - the point is to see every exception that escapes
        if ctx.marker.exists():
            return Outcome("accepted", detail=f"code from a file ran (then {type(exc).__name__})")
        return Outcome("traceback", detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    if ctx.marker.exists():
        return Outcome("accepted", detail="code from a file ran")
    errors = [line for line in err.getvalue().splitlines() if line.strip() and ": warning:" not in line]
    if case.expect_ok:
        if code != 0:
            return Outcome("traceback", detail=f"exit {code}: {err.getvalue()[-300:]}")
        problem = case.check(ctx) if case.check is not None else None
        return Outcome("accepted", detail=problem) if problem else Outcome("clean", "(succeeded as it should)")
    if code == 0:
        problem = case.check(ctx) if case.check is not None else None
        return Outcome("accepted", detail=f"exit 0{': ' + problem if problem else ''}")
    if code != 2 or len(errors) != 1 or "Traceback" in err.getvalue():
        return Outcome("traceback", detail=f"exit {code}: {err.getvalue()[-300:]}")
    message = errors[0]
    if case.check is not None:
        problem = case.check(ctx)
        if problem:
            return Outcome("accepted", message, detail=problem)
    return Outcome("clean", message)


# -- the test -------------------------------------------------------------------------------------------
CASES = all_cases()


def test_the_table_has_at_least_the_campaign_cases():
    assert len(CASES) >= 109 + 70
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.category for c in CASES} == set(CATEGORIES)


try:
    import pytest
except ImportError:  # pragma: no cover - the script mode needs no pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def base(tmp_path_factory):
        return build_base(tmp_path_factory.mktemp("bad_input_base"))

    @pytest.mark.parametrize("case", CASES, ids=[f"{c.category}: {c.id}" for c in CASES])
    def test_bad_input_is_one_clean_line(case, base, tmp_path):
        outcome = run_case(case, base, tmp_path)
        assert outcome.kind == "clean", f"{outcome.kind}: {outcome.detail}"
        if case.expect_ok:
            return
        assert outcome.message.startswith(case.runner), outcome.message
        assert ": error: " in outcome.message, outcome.message
        if case.needle is not None:
            assert case.needle in outcome.message, outcome.message


# -- counting (script mode) -----------------------------------------------------------------------------
def count(show: bool = False) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    root = Path(tempfile.mkdtemp(prefix="predictgs-bad-input-"))
    try:
        base = build_base(root / "base")
        counts = {cat: {"tried": 0, "clean": 0, "traceback": 0, "accepted": 0} for cat in CATEGORIES}
        for i, case in enumerate(CASES):
            outcome = run_case(case, base, root / f"case{i:03d}")
            counts[case.category]["tried"] += 1
            counts[case.category][outcome.kind] += 1
            if show:
                print(f"{outcome.kind:9s} {case.category:9s} {case.id}: {outcome.message or outcome.detail}"[:240],
                      flush=True)
        return counts
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import resource

    limit = 8 << 30  # an old checkout must not take the machine down on a hostile case
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result = count(show="--show" in sys.argv)
    print(f"{'category':10s} {'tried':>6s} {'clean':>6s} {'traceback':>10s} {'accepted':>9s}")
    for category, row in result.items():
        print(f"{category:10s} {row['tried']:6d} {row['clean']:6d} {row['traceback']:10d} {row['accepted']:9d}")
    total = {k: sum(r[k] for r in result.values()) for k in ("tried", "clean", "traceback", "accepted")}
    print(f"{'total':10s} {total['tried']:6d} {total['clean']:6d} {total['traceback']:10d} {total['accepted']:9d}")
