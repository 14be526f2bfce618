"""What a training reports while it runs: the per-iteration CSV (resumed runs included), TensorBoard
(when installed), the one-time CPU run-time estimate and the no-GPU notice."""

from __future__ import annotations

import csv
import types

import pytest
import torch
import yaml

from predictgs.cli import main
from predictgs.data.synth import generate_scene
from predictgs.pipeline.train import run_training
from predictgs.train import monitor as monitor_module
from predictgs.train.monitor import BASE_COLUMNS, CSV_NAME, TrainMonitor

pytestmark = pytest.mark.slow

ITERATIONS = 40
CONFIG = {"train": {"lpips": False, "log_every": 10, "checkpoints": 4},
          "model": {"curriculum": {"noise_from": 0.1, "entropy_from": 0.2, "bbox_update_at": 0.2}},
          "model_by_method": {"hac": {"context": {"log2_grid": 8, "log2_plane": 8}}}}


@pytest.fixture(scope="module")
def scene_and_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=9, num_points=300)
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return scene, config


def _rows(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_csv_log_has_a_row_every_log_every_iterations(scene_and_config, tmp_path, capsys):
    scene, config = scene_and_config
    run = tmp_path / "run"
    assert main(["train", "--method", "hac", "--scene", str(scene), "--out", str(run), "--config", str(config),
                 "--iterations", str(ITERATIONS), "--quiet"]) == 0
    assert "no CUDA device found" in capsys.readouterr().err or torch.cuda.is_available()
    columns, rows = _rows(run / CSV_NAME)
    assert columns[:len(BASE_COLUMNS)] == list(BASE_COLUMNS)
    assert {f"bits_{c}" for c in ("anchor", "feat", "scaling", "offsets", "hash", "masks", "mlps")} <= set(columns)
    assert [int(r["iteration"]) for r in rows] == [10, 20, 30, 40]
    for row in rows:
        assert float(row["loss"]) > 0 and float(row["train_psnr"]) > 0 and int(row["anchors"]) > 0
        assert int(row["gaussians_rendered"]) > 0 and float(row["its_per_second"]) > 0
        assert float(row["bits_feat"]) > 0  # every row: 40 iterations are below 100 log points
    # the rate term exists from the entropy phase on (iteration 0.2 x 40 = 8)
    assert all(float(r["rate_term"]) > 0 for r in rows)


def test_a_resumed_run_drops_the_rows_after_its_checkpoint(scene_and_config, tmp_path):
    scene, config = scene_and_config
    run = tmp_path / "run"
    options = dict(iterations=ITERATIONS, config_file=config, progress=False)
    assert run_training("scaffold", scene, run, stop_after=35, **options) is None  # checkpoint at 30
    assert [int(r["iteration"]) for r in _rows(run / CSV_NAME)[1]] == [10, 20, 30, 35]  # stopped at 35
    run_training("scaffold", scene, run, **options)
    iterations = [int(r["iteration"]) for r in _rows(run / CSV_NAME)[1]]
    assert iterations == [10, 20, 30, 40]  # 35 was redone from the checkpoint at 30: its row went


def test_tensorboard_gets_the_scalars_and_a_test_view(scene_and_config, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra (predictgs[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scene, config = scene_and_config
    run = tmp_path / "run"
    run_training("scaffold", scene, run, iterations=20, config_file=config, progress=False, tensorboard=True,
                 tensorboard_images=10)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/train_psnr", "train/anchors", "train/bits_feat"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20]
    assert tags["images"] == ["test_view/render"]
    assert [e.step for e in events.Images("test_view/render")] == [10, 20]
    assert events.Images("test_view/render")[0].width == 40


def test_tensorboard_missing_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    from predictgs.errors import ConfigError

    with pytest.raises(ConfigError, match=r"predictgs\[tensorboard\]"):
        TrainMonitor(tmp_path, tensorboard=True)


def test_a_long_cpu_training_is_announced_once(monkeypatch):
    """From the first iterations: predicted total > the limit -> one message with the estimate and the
    ways to shorten it; a short one says nothing."""
    clock = {"now": 0.0}
    monkeypatch.setattr(monitor_module.time, "perf_counter", lambda: clock["now"])
    said = []
    trainer = types.SimpleNamespace(device=torch.device("cpu"), total=30000, iteration=0, train_seconds=0.0,
                                    model=types.SimpleNamespace(), config=types.SimpleNamespace(log_every=50))
    monitor = TrainMonitor(None, notify=said.append)
    monitor.start(trainer)
    clock["now"] = 30.0  # a slow first iteration (warm-up) does not count
    monitor.after_step(trainer, 1)
    for it in range(2, 20):
        clock["now"] = 30.0 + 2.0 * (it - 1)  # then 2 s per iteration: 30,000 iterations ~ 1000 min
        monitor.after_step(trainer, it)
    assert len(said) == 1
    assert "about 1000 min" in said[0] and "--iterations" in said[0] and "--device cuda" in said[0]
    quick = TrainMonitor(None, notify=said.append)
    trainer.total = 100
    clock["now"] = 0.0
    quick.start(trainer)
    for it in range(1, 20):
        clock["now"] = 2.0 * it  # 100 iterations ~ 3 min
        quick.after_step(trainer, it)
    assert len(said) == 1
