#!/usr/bin/env python
"""Bits per anchor of the anchor positions: the octree coder (format 4) against the Morton varints +
deflate (format 2), on the initial anchors of real and synthetic scenes at given voxel sizes.

    python benchmarks/bench_positions.py                                  # fern at 0.001 and 0.0092
    python benchmarks/bench_positions.py --scene data/synth_outdoor:0.001 data/synth_object:0.01 \\
        data/synth_indoor:0.005 --json positions.json

Each ``--scene`` is ``PATH[:VOXEL]`` (several voxel sizes: repeat the scene). The initial anchors are
what HAC++ starts from (the scene's points voxelised, ``predictgs.model.anchors.voxelize``); both
layouts are measured on HAC++'s voxel-lattice codes and on HAC's 16-bit box codes of the same anchors.
Prints a table and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from predictgs.codec.positions import encode_positions, lattice_layout, morton_order, morton_section
from predictgs.data import load_scene
from predictgs.model.anchors import voxelize

DEFAULT_SCENES = ["../shared/data/scenes/fern:0.001", "../shared/data/scenes/fern:0.0092"]


def measure(path: str, voxel: float) -> dict:
    scene = load_scene(Path(path), {})
    anchors = voxelize(np.asarray(scene.points, dtype=np.float32), voxel, 0)
    lattice = torch.unique(torch.round(torch.from_numpy(anchors) / voxel).long(), dim=0)
    origin, bits = lattice_layout(lattice)
    codes = lattice - origin
    codes = codes[morton_order(codes, bits)]
    n = codes.shape[0]
    start = time.process_time()
    section = encode_positions(codes, bits)
    seconds = time.process_time() - start
    row = {"scene": path, "voxel_size": voxel, "anchors": n, "lattice_bits_per_axis": bits,
           "hacpp_morton_bits_per_anchor": 8 * len(morton_section(codes, bits)) / n,
           "hacpp_octree_bits_per_anchor": 8 * len(section) / n, "mode": "octree" if section[0] else "morton",
           "encode_cpu_seconds": seconds}
    # HAC's 16-bit codes of the same anchors in their box.
    positions = torch.from_numpy(anchors)
    lower, upper = positions.min(0).values, positions.max(0).values
    step = (upper - lower) / 65535 + 1e-6
    box = torch.clamp(torch.floor((positions - lower) / step), 0, 65535).long()
    box = box[morton_order(box)]
    row["hac_morton_bits_per_anchor"] = 8 * len(morton_section(box)) / n
    row["hac_best_bits_per_anchor"] = 8 * len(encode_positions(box)) / n
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", nargs="+", default=DEFAULT_SCENES, help="PATH[:VOXEL] (default voxel 0.001)")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'scene':<36} {'voxel':>7} {'anchors':>8} {'B':>3} {'HAC++ before':>12} {'after':>6} "
          f"{'HAC before':>10} {'after':>6}  (bits per anchor)")
    for item in args.scene:
        path, _, voxel = item.rpartition(":") if ":" in item else (item, "", "0.001")
        row = measure(path, float(voxel))
        rows.append(row)
        print(f"{path:<36} {row['voxel_size']:>7g} {row['anchors']:>8} {row['lattice_bits_per_axis']:>3} "
              f"{row['hacpp_morton_bits_per_anchor']:>12.1f} {row['hacpp_octree_bits_per_anchor']:>6.1f} "
              f"{row['hac_morton_bits_per_anchor']:>10.1f} {row['hac_best_bits_per_anchor']:>6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
