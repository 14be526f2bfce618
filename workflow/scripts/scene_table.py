"""Collect the scene-info JSON files of the configured benchmarks into one CSV (one row per scene)."""

import json
from pathlib import Path

import pandas as pd

from predictgs.io import write_atomic


def scene_table(info_paths, scenes):
    """``scenes``: dicts with benchmark and scene, in the order of ``info_paths``."""
    rows = []
    for path, names in zip(info_paths, scenes):
        info = json.loads(Path(path).read_text())
        width, height = info["image_size"]
        rows.append(dict(
            benchmark=names["benchmark"], scene=names["scene"], format=info["format"],
            images=info["num_images"], train=info["num_train"], test=info["num_test"], width=width,
            height=height, points=info["num_points"], extent=round(info["extent"], 4),
        ))
    return pd.DataFrame(rows)


if "snakemake" in globals():
    table = scene_table(snakemake.input, snakemake.params.scenes)  # noqa: F821 - injected by Snakemake
    write_atomic(snakemake.output[0], table.to_csv(index=False))  # noqa: F821
