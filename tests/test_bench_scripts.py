"""The benchmark scripts run and write their figures (no timing is asserted: speed is measured, not tested)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    for name in ("bench_render", "compare_gsplat"):
        sys.modules.pop(name, None)
    import bench_render
    import compare_gsplat

    return bench_render, compare_gsplat


def test_bench_render_times_both_cpu_backends_and_writes_json(bench_modules, tmp_path):
    bench_render, _ = bench_modules
    from predictgs import kernels

    if not kernels.available():
        pytest.skip(f"the compiled kernels cannot be built here: {kernels.unavailable_reason()}")
    out = tmp_path / "render.json"
    assert bench_render.main(["--cases", "300@32x24", "--no-frame", "--threads", "1", "--repeats", "1",
                              "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["case"], r["threads"]) for r in rows] == [
        ("reference", "300 random @ 32x24", 1), ("compiled", "300 random @ 32x24", 1)]
    assert rows[0]["visible"] == rows[1]["visible"] > 0
    assert rows[0]["speedup_vs_reference"] == 1.0 and rows[1]["speedup_vs_reference"] > 0


def test_a_saved_frame_is_read_back(bench_modules, tmp_path):
    bench_render, _ = bench_modules
    import torch

    frame = dict(zip(bench_render.TENSORS, (t.detach() for t in bench_render.make_cloud(50))))
    frame["camera"] = bench_render.make_camera(16, 12)
    torch.save(frame, tmp_path / "f.pt")
    loaded = bench_render.load_frame(tmp_path / "f.pt")
    assert torch.equal(loaded["means"], frame["means"]) and loaded["camera"]["width"] == 16
    torch.save({"means": frame["means"]}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a frame"):
        bench_render.load_frame(tmp_path / "bad.pt")


def test_compare_gsplat_uses_the_render_benchmark_helpers(bench_modules):
    """compare_gsplat.py (run by make gpu-check) builds its cloud with bench_render's helpers: on the CPU it
    stops with its one-line message, and the helpers it calls keep their signatures."""
    bench_render, compare_gsplat = bench_modules
    params = bench_render.make_cloud(100, "cpu")
    camera = bench_render.make_camera(32, 24, "cpu")
    assert len(params) == 5 and all(p.requires_grad for p in params)
    figures = bench_render.time_forward_backward(params, camera, "reference", 1)
    assert set(figures) == {"median_s", "min_s", "visible"}
    import torch

    if not torch.cuda.is_available():
        assert compare_gsplat.main([]) == 2


def test_bad_cases_are_refused(bench_modules, capsys):
    bench_render, _ = bench_modules
    with pytest.raises(SystemExit) as stop:
        bench_render.main(["--cases", "2x2"])
    assert stop.value.code == 2
    assert "a case looks like 20000@128x128" in capsys.readouterr().err


def test_bench_train_reference_is_the_step_before_the_kernels(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("bench_train", None)
    import bench_train
    import torch

    from baselines.hac import HAC
    from predictgs import kernels
    from predictgs.train import trainer as trainer_module

    masks = torch.ones(6, 10, 1)
    with bench_train.before_kernels():
        assert not kernels.available()
        params = [torch.nn.Parameter(torch.zeros(3))]
        from predictgs.train.optim import ParamGroup
        from predictgs.train.schedule import ExponentialLR

        adam = trainer_module.make_adam([ParamGroup("x", params, ExponentialLR(1e-3))], fused=True)
        assert not adam.defaults.get("fused")
        model = HAC.__new__(HAC)
        model.config = type("C", (), {"entropy_sample_rate": 1.0})()
        sample = model.rate_sample(masks)
        assert sample.rows is None and sample.weights is not None
    from predictgs.train import optim

    assert trainer_module.make_adam is optim.make_adam and kernels.available() == (kernels.load() is not None)
    model = HAC.__new__(HAC)
    model.config = type("C", (), {"entropy_sample_rate": 1.0})()
    assert model.rate_sample(masks).rows is not None  # today's step on the CPU: the sampled rows
