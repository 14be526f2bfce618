#!/usr/bin/env python
"""Training speed (iterations per second) per schedule phase: the compiled CPU kernels against the
pure-PyTorch reference, in one run on the same machine.

    python benchmarks/bench_train.py                                   # synthetic outdoor scene, hac + predictgs
    python benchmarks/bench_train.py --scene ../shared/data/scenes/fern --voxel-size 0.05 --threads 1 2

For each method and thread count two trainers are built from the same scene and seed: ``reference`` (the
training step as it was before the compiled kernels: the PyTorch rasterizer and hash grid
(``predictgs.kernels.disabled()``), the per-tensor Adam and HAC's rate term over every visible anchor,
weighted) and ``compiled`` (today's step: ``--rasterizer auto`` on the CPU). They are stepped alternately, ``--block`` iterations at a
time, each with its own random state, so that both see the same load on a shared machine. Milestones are
fractions of ``--iterations`` (the paper schedule scaled to the run), so the run passes through the plain,
noise and entropy phases of HAC. Prints iterations per second per tenth of the run and the ratio; writes
JSON with ``--json``. Without ``--scene`` it generates the embedded benchmark's outdoor scene (160x120, 40
views) in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from predictgs import kernels
from predictgs.data import load_scene
from predictgs.data.synth import generate_scene
from predictgs.pipeline.train import build_spec, new_trainer

from bench_render import cpu_model  # benchmarks/, the folder of this script, is on sys.path

CONFIGS = ("reference", "compiled")


@contextlib.contextmanager
def before_kernels():
    """The training step as it was before the compiled kernels: the reference rasterizer and hash grid,
    the per-tensor Adam, and HAC's rate term computed for every visible anchor and weighted by the sample
    (not only for the sampled rows)."""
    from unittest import mock

    from baselines.hac import HAC
    from predictgs.train import trainer as trainer_module

    make_adam = trainer_module.make_adam
    rate_sample = HAC.rate_sample
    with contextlib.ExitStack() as stack:
        stack.enter_context(kernels.disabled())
        stack.enter_context(mock.patch.object(trainer_module, "make_adam",
                                              lambda groups, fused=False: make_adam(groups, fused=False)))
        stack.enter_context(mock.patch.object(HAC, "rate_sample",
                                              lambda self, masks, by_rows=None: rate_sample(self, masks, False)))
        yield


class Run:
    """One trainer and its own random state, stepped a block at a time."""

    def __init__(self, method: str, config: str, scene_path: Path, scene, iterations: int, config_file: Path | None,
                 workdir: Path):
        self.config = config
        with self.context():
            spec, model_config = build_spec(method, scene_path, iterations=iterations, device="cpu",
                                            rasterizer="reference" if config == "reference" else "auto",
                                            config_file=config_file)
            self.trainer = new_trainer(spec, model_config, scene, workdir / f"{method}_{config}", progress=False)
            self.trainer.model.train()
            for index in range(len(self.trainer.views)):  # image decoding is not training time
                self.trainer.target(index)
        self.rng = torch.get_rng_state()
        self.seconds = 0.0
        self.iteration = 0
        self.stats: dict = {}

    def context(self):
        return before_kernels() if self.config == "reference" else contextlib.nullcontext()

    def step(self, count: int) -> None:
        torch.set_rng_state(self.rng)
        with self.context():
            start = time.perf_counter()
            for _ in range(count):
                self.iteration += 1
                self.stats = self.trainer.step(self.iteration)
                self.trainer.iteration = self.iteration
            self.seconds += time.perf_counter() - start
        self.rng = torch.get_rng_state()


def bench_method(method: str, scene_path: Path, iterations: int, block: int, configs, config_file, workdir) -> dict:
    scene = load_scene(scene_path, build_spec(method, scene_path, config_file=config_file)[0].protocol)
    runs = [Run(method, c, scene_path, scene, iterations, config_file, workdir) for c in configs]
    tenth = max(1, iterations // 10)
    phases = []
    done = 0
    while done < iterations:
        until = min(iterations, done + tenth)
        before = {r.config: r.seconds for r in runs}
        while runs[0].iteration < until:
            count = min(block, until - runs[0].iteration)
            for run in runs:
                run.step(count)
        row = {"until": until}
        for run in runs:
            elapsed = run.seconds - before[run.config]
            row[run.config] = {"it_per_s": (until - done) / elapsed, "anchors": run.trainer.model.num_primitives,
                               "gaussians": int(run.stats["gaussians"])}
        phases.append(row)
        done = until
    result = {"method": method, "iterations": iterations, "phases": phases,
              "mean_it_per_s": {r.config: iterations / r.seconds for r in runs}}
    if len(runs) == 2:
        result["speedup"] = runs[0].seconds / runs[1].seconds
    return result


def print_result(result: dict, configs) -> None:
    means = "  ".join(f"{c} {result['mean_it_per_s'][c]:.2f} it/s" for c in configs)
    speed = f"  -> {result['speedup']:.2f}x" if "speedup" in result else ""
    print(f"{result['method']:>10} ({result['threads']} thread(s)): {means}{speed}", flush=True)
    for row in result["phases"]:
        cells = "  ".join(f"{c} {row[c]['it_per_s']:6.2f} it/s ({row[c]['anchors']:>6} anchors, "
                          f"{row[c]['gaussians']:>7} Gaussians)" for c in configs)
        print(f"            to it {row['until']:>6}: {cells}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, help="scene folder (default: generate the synthetic outdoor scene)")
    parser.add_argument("--methods", nargs="+", default=["hac", "predictgs"])
    parser.add_argument("--iterations", type=int, default=300, help="iterations per run (default 300)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts (default 1)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS),
                        help="what to time (default: both, alternately)")
    parser.add_argument("--block", type=int, default=5, help="iterations per turn (default 5)")
    parser.add_argument("--voxel-size", type=float, help="model.voxel_size (default: the method's automatic choice)")
    parser.add_argument("--config", type=Path, help="a `predictgs train --config` YAML for every run")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.iterations < 10:
        parser.error("--iterations must be at least 10")
    if args.block < 1 or any(t < 1 for t in args.threads):
        parser.error("--block and --threads must be positive")
    if args.scene is not None and not args.scene.is_dir():
        parser.error(f"--scene {args.scene} is not a folder")
    if "compiled" in args.configs and not kernels.available():
        parser.error(f"the compiled kernels cannot be built: {kernels.unavailable_reason()}")
    print(f"CPU: {cpu_model()}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scene_path = args.scene
        if scene_path is None:
            scene_path = workdir / "synth_outdoor"
            generate_scene("outdoor", 0, scene_path)
        config_file = args.config
        if args.voxel_size is not None:
            overrides = yaml.safe_load(args.config.read_text()) if args.config else {}
            overrides.setdefault("model", {})["voxel_size"] = args.voxel_size
            config_file = workdir / "bench_config.yaml"
            config_file.write_text(yaml.safe_dump(overrides))
        results = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            for method in args.methods:
                result = bench_method(method, scene_path, args.iterations, args.block, args.configs, config_file,
                                      workdir / f"t{threads}")
                result["threads"] = threads
                results.append(result)
                print_result(result, args.configs)
    if args.json:
        Path(args.json).write_text(json.dumps({"scene": str(args.scene or "synthetic outdoor (default)"),
                                               "cpu": cpu_model(), "torch": torch.__version__,
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
