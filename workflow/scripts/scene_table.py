"""Collect the scene-info JSON files of the benchmark into one CSV (one row per scene)."""

import json
from pathlib import Path

import pandas as pd

rows = []
for path in snakemake.input:  # noqa: F821 - injected by Snakemake
    info = json.loads(Path(path).read_text())
    scene = Path(path).stem
    width, height = info["image_size"]
    rows.append(dict(
        benchmark=snakemake.params.benchmarks[scene], scene=scene, format=info["format"],  # noqa: F821
        images=info["num_images"], train=info["num_train"], test=info["num_test"], width=width,
        height=height, points=info["num_points"], extent=round(info["extent"], 4),
    ))
pd.DataFrame(rows).to_csv(snakemake.output[0], index=False)  # noqa: F821
