"""Parts of benchmarks/gpu_check.py that only matter on a GPU machine, checked on the CPU: how gsplat is
installed, how host synchronisations are attributed, which GPU is named, and that the Triton kernels are
compiled before the timed phases (the variants themselves: test_hashgrid_triton_launch.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Stop(Exception):
    pass


# -- installing gsplat ------------------------------------------------------------------------------------
def test_install_never_pulls_torch_and_puts_ninja_on_path(gpu_check, monkeypatch, tmp_path):
    """pip --target without --no-deps resolves gsplat's "torch" requirement by installing a second torch
    first on sys.path; the ninja program it installs lands in <target>/bin, which must be on PATH."""
    import shutil

    target = tmp_path / "site"
    monkeypatch.setenv("PREDICTGS_SITE", str(target))
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the test
    monkeypatch.setattr(sys, "path", list(sys.path))
    absent = {"gsplat", "constriction", "jaxtyping", "wadler_lindig", "rich", "markdown_it", "mdurl", "pygments",
              "ninja"}
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in absent else real_find_spec(name, *a, **k))
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    commands = []

    def fake_pip(command, check):
        commands.append(command)
        (target / "bin").mkdir(parents=True)
        (target / "bin" / "ninja").write_text("#!/bin/sh\n")

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_pip)
    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: SimpleNamespace(__version__="installed")
                        if name in absent else real_import(name, *a))
    assert gpu_check.ensure_packages(None) == {"gsplat": "installed", "constriction": "installed"}
    assert len(commands) == 1
    command = commands[0]
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert "--no-deps" in command and command[command.index("--target") + 1] == str(target)
    requirements = [arg for arg in command if "==" in arg]
    assert {r.split("==")[0] for r in requirements} >= {"gsplat", "constriction", "jaxtyping", "rich", "ninja"}
    assert "gsplat==1.5.3" in requirements
    assert not [r for r in requirements if r.split("==")[0] in ("torch", "numpy")]
    assert os.environ["PATH"].split(os.pathsep)[0] == str(target / "bin")
    assert sys.path[0] == str(target)


def test_install_from_wheels_is_offline_and_without_dependencies(gpu_check, tmp_path):
    (tmp_path / "gsplat-1.5.3-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "ninja-1.13.2-py3-none-manylinux.whl").write_bytes(b"")
    command = gpu_check.install_command(["gsplat==1.5.3"], str(tmp_path), tmp_path / "site")
    assert {"--no-deps", "--no-index", "--target"} <= set(command)
    assert [Path(a).name for a in command if a.endswith(".whl")] == [
        "gsplat-1.5.3-py3-none-any.whl", "ninja-1.13.2-py3-none-manylinux.whl"]


# -- attributing synchronisations -------------------------------------------------------------------------
def frames_in(filename: str, source: str, namespace: dict) -> dict:
    """Define the functions of ``source`` as if they lived in ``filename`` (their frames say so)."""
    exec(compile(source, filename, "exec"), namespace)
    return namespace


SYNC = "called a synchronizing CUDA operation"


def test_syncs_through_torch_wrappers_and_backward_count_as_ours(gpu_check, monkeypatch):
    """The sync warning names the innermost Python frame: inside torch's Python wrappers (torch.unique)
    or the autograd engine for syncs caused by our code; the innermost project or gsplat frame decides."""
    torch_dir = Path(torch.__file__).parent
    site = torch_dir.parent
    ns: dict = {"warnings": warnings, "torch": torch, "SYNC": SYNC}
    frames_in(str(torch_dir / "_wrapper_probe.py"), (
        "def unique_like(x):\n"
        "    warnings.warn(SYNC)\n"  # a C++ sync inside torch.unique names torch/functional.py
        "    return x\n"
        "class Synchronising(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return x * 2\n"
        "    @staticmethod\n"
        "    def backward(ctx, grad):\n"
        "        warnings.warn(SYNC)\n"  # a sync surfacing in the backward pass
        "        return grad * 2\n"), ns)
    frames_in(str(site / "gsplat" / "_rendering_probe.py"), (
        "def rasterize_like(x):\n"
        "    warnings.warn(SYNC)\n"
        "    return x\n"), ns)
    frames_in(str(ROOT / "predictgs" / "train" / "_step_probe.py"), (
        "def step(iteration):\n"
        "    x = torch.ones(3, requires_grad=True)\n"
        "    unique_like(x)\n"
        "    rasterize_like(x)\n"
        "    warnings.warn('an unrelated warning')\n"
        "    Synchronising.apply(x).sum().backward()\n"), ns)

    class Trainer:
        iteration = 0

        @staticmethod
        def step(iteration):
            ns["step"](iteration)

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    trainer = Trainer()
    result = gpu_check.count_syncs(trainer, 4)
    assert result["ours_per_step"] == 2
    assert result["rasterizer_per_step"] == 1
    assert result["other_per_step"] == 0
    assert trainer.iteration == 4


# -- which GPU is named -----------------------------------------------------------------------------------
def test_gpu_named_is_the_chosen_device(gpu_check, monkeypatch, tmp_path):
    asked = []

    def get_device_name(*args):
        asked.append(args)
        raise Stop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", get_device_name)
    with pytest.raises(Stop):
        gpu_check.main(["--scene", str(tmp_path), "--out", str(tmp_path / "out"), "--device", "cuda:1"])
    assert asked == [("cuda:1",)]


# -- warm-up before timing --------------------------------------------------------------------------------
def test_kernels_are_warmed_up_before_the_timed_phases(gpu_check, monkeypatch, tmp_path):
    from predictgs.data.synth import generate_scene

    scene = tmp_path / "scene"
    generate_scene("object", 0, scene, width=24, height=18, num_views=5, num_points=120)
    order = []
    real_warm_up = gpu_check.warm_up_kernels

    def warm_up(model, device):
        order.append("warm_up")
        return real_warm_up(model, device)

    def timed(trainer, iterations):
        order.append("timed")
        raise Stop

    monkeypatch.setattr(gpu_check, "warm_up_kernels", warm_up)
    monkeypatch.setattr(gpu_check, "timed_phases", timed)
    with pytest.raises(Stop):
        gpu_check.train_run("predictgs", 0.004, scene, tmp_path / "out", 20, "cpu", "reference", 0.0, 0)
    assert order == ["warm_up", "timed"]
