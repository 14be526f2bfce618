#!/usr/bin/env python
"""Training speed (iterations per second) of the anchor methods on a scene, per schedule phase.

    python benchmarks/bench_train.py                       # default synthetic scene, scaffold and hac
    python benchmarks/bench_train.py --scene ../shared/data/scenes/fern --methods hac --iterations 300

Without --scene it generates the embedded benchmark's default outdoor scene (160x120, 40 views) in a
temporary folder. Each method trains --iterations iterations with the milestones of the paper schedule
scaled to that length (so the runs pass through the plain, noise and entropy phases of HAC); the script
prints iterations per second per tenth of the run and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from predictgs.data import load_scene
from predictgs.data.synth import generate_scene
from predictgs.evaluate import device_label
from predictgs.pipeline.train import build_spec, new_trainer


def bench_method(method: str, scene_path: Path, iterations: int, device: str, workdir: Path) -> dict:
    spec, model_config = build_spec(method, scene_path, iterations=iterations, device=device)
    scene = load_scene(scene_path, spec.protocol)
    trainer = new_trainer(spec, model_config, scene, workdir / method, progress=False)
    model = trainer.model
    model.train()
    for index in range(len(trainer.views)):  # image decoding is not training time
        trainer.target(index)
    tenth = max(1, iterations // 10)
    rows = []
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        stats = trainer.step(it)
        trainer.iteration = it
        if it % tenth == 0:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            rows.append({"until": it, "it_per_s": tenth / elapsed, "anchors": model.anchors.num_anchors,
                         "gaussians": stats["gaussians"]})
            start = time.perf_counter()
    return {"method": method, "device": device_label(trainer.device), "iterations": iterations,
            "initial_anchors": rows[0]["anchors"] if rows else None, "phases": rows,
            "mean_it_per_s": iterations / sum(tenth / r["it_per_s"] for r in rows) if rows else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, help="scene folder (default: generate the synthetic outdoor scene)")
    parser.add_argument("--methods", nargs="+", default=["scaffold", "hac"])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.iterations < 10:
        parser.error("--iterations must be at least 10")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scene_path = args.scene
        if scene_path is None:
            scene_path = workdir / "synth_outdoor"
            generate_scene("outdoor", 0, scene_path)
        results = []
        for method in args.methods:
            result = bench_method(method, scene_path, args.iterations, args.device, workdir)
            results.append(result)
            print(f"{method:>9} on {result['device']}: {result['mean_it_per_s']:.2f} it/s over {args.iterations} "
                  f"iterations")
            for row in result["phases"]:
                print(f"           to it {row['until']:>6}: {row['it_per_s']:6.2f} it/s, {row['anchors']:>7} anchors, "
                      f"{row['gaussians']:>8} Gaussians drawn")
    if args.json:
        Path(args.json).write_text(json.dumps({"scene": str(args.scene or "synthetic outdoor (default)"),
                                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
