"""The scale a verdict speaks about (predictgs.report.scale): anchors, image size, iterations and the share
of the file that networks and hash grids take, per run group and per benchmark, in the verdicts'
footnotes; and benchmarks that a configuration declares stand-ins (``stands_in_for``)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from predictgs.methods.predict_gs import paper_settings
from predictgs.report.claims import CLAIMS_FILE, HOLDS, INSUFFICIENT, evaluate_claims, load_claims
from predictgs.report.paper import benchmarks_standing_for, paper_benchmark_of
from predictgs.report.scale import benchmark_footnotes, run_scale, scale_table
from predictgs.report.tables import run_row
from predictgs.report.writer import write_verdicts

DEFAULTS = paper_settings()


def metrics(method, benchmark="real_llff", scene="fern", lmbda=0.004, seed=0, psnr=25.0, size=1000.0,
            anchors=20000, mlps=150.0, hash_=50.0, sfp=None, **fields) -> dict:
    data = {"method": method, "method_label": {"hac": "HAC", "predictgs": "Predict-GS"}.get(method, method),
            "benchmark": benchmark, "scene": scene, "lmbda": lmbda, "seed": seed, "psnr": psnr,
            "size_bytes": size, "num_anchors": anchors, "iterations": 3000, "image_size": [504, 378],
            "section_bytes": {"mlps": mlps, "hash": hash_, **({"sfp": sfp} if sfp is not None else {})},
            **fields}
    if method.startswith("predictgs"):
        data = {"residual_dim": 25, "schedule": "cosine", "ds_init": 0.7, **data}
    return data


def test_run_scale_reads_anchors_resolution_and_the_fixed_costs_share():
    runs = pd.DataFrame([
        run_row(metrics("hac", size=1000.0, mlps=150.0, hash_=50.0)),
        run_row(metrics("predictgs", size=2000.0, mlps=300.0, hash_=40.0, sfp=60.0)),
        # not encoded: the entropy model's estimates (bits) give the parts and the size
        run_row({k: v for k, v in metrics("hac", seed=1, anchors=18000).items() if k not in ("size_bytes", "section_bytes")}
                | {"estimated_bits": {"mlps": 8 * 100.0, "hash": 8 * 20.0, "feat": 8 * 280.0}}),
        run_row(metrics("3dgs", lmbda=0.0, anchors=None, num_gaussians=123456, section_bytes={}, image_size=None)),
    ])
    scale = run_scale(runs)
    assert scale["anchors"].tolist() == [20000, 20000, 18000, 123456]  # 3DGS: its Gaussians
    assert scale["networks_pct"].iloc[:3].tolist() == pytest.approx([15.0, 15.0, 25.0])
    assert scale["hash_pct"].iloc[:3].tolist() == pytest.approx([5.0, 5.0, 5.0])  # Predict-GS: hash + SFP
    assert math.isnan(scale["networks_pct"].iloc[3])
    assert scale["resolution"].tolist() == ["504x378", "504x378", "504x378", ""]


def test_scale_table_groups_the_seeds_of_a_run():
    runs = pd.DataFrame([run_row(metrics("hac", seed=s, anchors=a)) for s, a in ((0, 20000), (1, 24000), (2, 22000))]
                        + [run_row(metrics("hac", lmbda=0.001, size=2000.0))])
    table = scale_table(runs)
    assert len(table) == 2
    row = table[table["lambda"] == 0.004].iloc[0]
    assert (row["Seeds"], row["Resolution"], row["Iterations"], row["Method"]) == (3, "504x378", "3000", "HAC")
    assert (row["Anchors"], row["Anchors (min)"], row["Anchors (max)"]) == (22000, 20000, 24000)
    assert row["Networks [% of file]"] == pytest.approx(15.0)
    assert table[table["lambda"] == 0.001].iloc[0]["Networks [% of file]"] == pytest.approx(7.5)


def test_benchmark_footnote_quotes_hac_at_its_default_rate_point():
    runs = pd.DataFrame([
        run_row(metrics("hac", anchors=21000, mlps=180.0)),
        run_row(metrics("hac", lmbda=0.0005, anchors=26000, size=2000.0)),
        run_row(metrics("predictgs", anchors=23000)),
        run_row(metrics("hac", benchmark="real_object", scene="test_colmap_23", anchors=4000,
                        image_size=[500, 330])),
    ])
    notes = benchmark_footnotes(runs, {"real_llff": "Mip-NeRF360"})
    assert notes["real_llff"] == (
        "real_llff (standing in for Mip-NeRF360): scene fern at 504x378; 3000 iterations; anchors at the end "
        "21.0k–26.0k (HAC at λ 0.004: 21.0k); networks 8%–18% of a file (HAC at λ 0.004: 18%).")
    assert notes["real_object"].startswith("real_object: scene test_colmap_23 at 500x330; 3000 iterations")


def test_a_configured_stand_in_gets_the_claims_of_its_paper_benchmark(tmp_path):
    stand_ins = {"real_llff": "Mip-NeRF360"}
    assert paper_benchmark_of("real_llff") == (None, "")
    assert paper_benchmark_of("real_llff", stand_ins) == ("Mip-NeRF360", "stand-in")
    assert paper_benchmark_of("synth_outdoor", stand_ins) == ("Mip-NeRF360", "stand-in")  # still there
    assert benchmarks_standing_for("Mip-NeRF360", ["real_llff", "synth_object"], stand_ins) == ["real_llff"]
    rows = []
    for seed, factor in ((0, 0.80), (1, 0.85)):
        for lmbda, psnr, size in ((0.004, 24.0, 1.0e6), (0.002, 25.0, 1.5e6), (0.001, 26.0, 2.2e6)):
            rows.append(run_row(metrics("hac", lmbda=lmbda, seed=seed, psnr=psnr, size=size)))
            rows.append(run_row(metrics("predictgs", lmbda=lmbda, seed=seed, psnr=psnr, size=factor * size)))
    claims = load_claims(CLAIMS_FILE, settings=DEFAULTS)
    runs = pd.DataFrame(rows)
    verdicts, _ = evaluate_claims(runs, claims, defaults=DEFAULTS, stand_ins=stand_ins)
    bd = verdicts[(verdicts["claim"] == "bdrate-vs-hac") & (verdicts["benchmark"] == "real_llff")]
    assert len(bd) == 1 and bd.iloc[0]["verdict"] == HOLDS and bd.iloc[0]["paper_benchmark"] == "Mip-NeRF360"
    # without the mapping the benchmark stands in for nothing: no row is about it
    verdicts, _ = evaluate_claims(runs, claims, defaults=DEFAULTS)
    assert not (verdicts["benchmark"] == "real_llff").any()
    assert (verdicts[verdicts["claim"] == "bdrate-vs-hac"]["verdict"] == INSUFFICIENT).all()


def test_verdicts_markdown_has_the_scale_in_footnotes(tmp_path):
    runs = tmp_path / "runs"
    rows = [metrics("hac", lmbda=l, seed=s, psnr=p, size=z) for s in (0, 1)
            for l, p, z in ((0.004, 24.0, 1.0e6), (0.001, 26.0, 2.2e6))]
    rows += [metrics("predictgs", lmbda=l, seed=s, psnr=p, size=0.8 * z) for s in (0, 1)
             for l, p, z in ((0.004, 24.0, 1.0e6), (0.001, 26.0, 2.2e6))]
    for index, row in enumerate(rows):
        (runs / str(index)).mkdir(parents=True)
        (runs / str(index) / "summary.json").write_text(json.dumps(row))
    out = tmp_path / "out"
    write_verdicts(sorted(runs.rglob("summary.json")), CLAIMS_FILE, out / "v.csv", out / "v.md", out / "s.csv",
                   defaults=DEFAULTS, seeds=[0, 1], target="verdicts", stand_ins={"real_llff": "Mip-NeRF360"})
    markdown = (out / "v.md").read_text()
    assert "**Stand-ins: these verdicts speak about the scale of these runs only** (real_llff stands in for " \
           "Mip-NeRF360)" in markdown
    assert "embedded scale" not in markdown
    assert "| real_llff [^real_llff] |" in markdown  # the verdict rows point to the benchmark's footnote
    assert "\n[^real_llff]: real_llff (standing in for Mip-NeRF360): scene fern at 504x378; 3000 iterations; " \
           "anchors at the end 20.0k (HAC at λ 0.004: 20.0k); networks 0% of a file" in markdown
    assert "## Scale of the runs" in markdown
    assert "| real_llff | fern | HAC | default | 0.004 | 2 | 504x378 | 3000 | 20000 |" in markdown
