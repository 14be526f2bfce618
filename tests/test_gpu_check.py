"""benchmarks/gpu_check.py, the one command for a GPU machine, run as a CPU smoke test: the same steps
(train HAC and Predict-GS, encode, decode, evaluate) on a tiny scene, and the JSON it promises."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from predictgs.data.synth import generate_scene

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_gpu_check_runs_on_cpu_and_writes_its_figures(tmp_path):
    scene = tmp_path / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=9, num_points=300)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--scene", str(scene), "--out", str(out),
         "--device", "cpu", "--iterations", "30", "--voxel-size", "0", "--fps-seconds", "0.1", "--no-lpips",
         "--runs", "hac:0.004", "predictgs:0.004"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["gpu"] == "cpu" and figures["torch"]
    assert [(r["method"], r["lmbda"]) for r in figures["runs"]] == [("hac", 0.004), ("predictgs", 0.004)]
    for run in figures["runs"]:
        assert [p["phase"] for p in run["phases"]] == ["none", "noise", "entropy"]
        assert sum(p["iterations"] for p in run["phases"]) == 30
        assert run["size_bytes"] > 0 and run["estimated_size_bytes"] > 0 and run["fps"] > 0
        assert run["psnr"] == pytest.approx(run["prequant_psnr"], abs=1e-9)  # decoded = test-time model
        assert run["rasterizer"] == "reference"
        # the hash-grid encodings were run once before the timing (HAC: context; Predict-GS: + SFP)
        assert run["kernel_warm_up"]["encodings"] == {"hac": 1, "predictgs": 2}[run["method"]]
    assert set(figures["targets"]["lambda_0.004"]) >= {"hac_entropy_its", "predictgs_time_ratio", "fps_ratio"}
    assert "entropy it/s" in result.stdout


def test_gpu_check_refuses_bad_input(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--scene",
                             str(tmp_path / "missing")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr
