"""The paper's claims tested on runs (predictgs.report.claims): the claims file, each relation computed by
hand on constructed runs (BD-rate, ratio, change, delta, ordering), the verdict rules, and missing runs or
a single seed giving "insufficient data" instead of an error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from predictgs.errors import ReportError
from predictgs.methods import registry
from predictgs.methods.predict_gs import paper_settings
from predictgs.report import read_paper_table
from predictgs.report.claims import (
    CLAIMS_FILE,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    INSUFFICIENT,
    PER_SEED_COLUMNS,
    VERDICT_COLUMNS,
    evaluate_claims,
    load_claims,
    ordering_verdict,
    spread,
    verdict,
)
from predictgs.report.tables import run_row
from predictgs.report.writer import write_verdicts

DEFAULTS = paper_settings()
FUTURE_METHODS = {"3dgs", "hacpp"}  # named by claims, added to the workflow later


def run(method, benchmark="synth_outdoor", scene="a", lmbda=0.004, seed=0, psnr=25.0, size=1e6, **fields) -> dict:
    metrics = {"method": method, "benchmark": benchmark, "scene": scene, "lmbda": lmbda, "seed": seed,
               "psnr": psnr, "size_bytes": size, **fields}
    if method == "predictgs" or method.startswith("predictgs_"):
        metrics = {"residual_dim": 25, "schedule": "cosine", "ds_init": 0.7, **metrics}
    return run_row(metrics)


def table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def claims_from(text: str, tmp_path: Path) -> list:
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    return load_claims(path, settings=DEFAULTS)


def one(verdicts: pd.DataFrame, claim: str, benchmark: str | None = None) -> pd.Series:
    rows = verdicts[verdicts["claim"] == claim]
    if benchmark is not None:
        rows = rows[rows["benchmark"] == benchmark]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# ---------------------------------------------------------------------------------------------------
# The claims file


def test_the_shipped_claims_load_and_name_registered_methods():
    claims = load_claims(settings=DEFAULTS)
    assert len({c.id for c in claims}) >= 10
    methods = set(registry()) | FUTURE_METHODS
    named = {arm.method for c in claims for arm in c.arms} | {m for c in claims for m in (c.method, c.anchor) if m}
    assert named <= methods, named - methods
    assert {"3dgs"} <= named  # the size-vs-3DGS claim waits for 3DGS runs
    assert {c.benchmark for c in claims} == {"Mip-NeRF360", "Tanks&Temples", "Deep Blending", "any"}
    assert all(c.source and c.statement for c in claims)


def test_the_claimed_values_are_the_published_numbers():
    """Every value in claims.yaml that is derived from a published table is recomputed from it."""
    claims = {(c.id, c.benchmark): c for c in load_claims(settings=DEFAULTS)}

    def size(table_name, method, benchmark=None):
        rows = read_paper_table(table_name)
        rows = rows[rows["method"] == method]
        if benchmark:
            rows = rows[rows["benchmark"] == benchmark]
        assert len(rows) == 1
        return float(rows["size"].iloc[0])

    tables = {"Mip-NeRF360": "table1_mipnerf360", "Tanks&Temples": "table1_tandt",
              "Deep Blending": "table2_deepblending"}
    for benchmark, name in tables.items():
        ours, hac = size(name, "Ours"), size(name, "HAC")
        assert claims[("bdrate-vs-hac", benchmark)].paper == pytest.approx(100 * (ours / hac - 1), abs=0.006)
        scaffold, gaussians = size(name, "Scaffold-GS"), size(name, "3DGS")
        assert claims[("size-vs-scaffold", benchmark)].paper == pytest.approx(scaffold / ours, abs=0.006)
        assert claims[("size-vs-3dgs", benchmark)].paper == pytest.approx(gaussians / ours, abs=0.006)
        bits = read_paper_table("table3_bit_allocation")
        bsf = bits[(bits["benchmark"] == benchmark) & (bits["method"] == "Ours")]["bsf_percent"].item()
        assert claims[("feature-bits-vs-hac", benchmark)].paper == bsf
    table4 = read_paper_table("table4_ablation").set_index("our_method")
    psnr, mb = table4["psnr"], table4["size"]
    assert claims[("components-quality", "any")].paper == pytest.approx(
        (psnr["predictgs_no_pt"] - psnr["predictgs_sfp_only"], psnr["predictgs"] - psnr["predictgs_no_pt"]))
    assert claims[("components-size", "any")].paper == pytest.approx(
        (100 * (mb["predictgs_no_pt"] / mb["predictgs_sfp_only"] - 1), 100 * (mb["hac"] / mb["predictgs_no_pt"] - 1)),
        abs=0.006)
    table6 = read_paper_table("table6_schedule").set_index("our_schedule")["psnr"]
    assert claims[("schedule-quality", "any")].paper == pytest.approx(
        (table6["linear"] - table6["none"], table6["cosine"] - table6["linear"]))
    table5 = read_paper_table("table5_efficiency").set_index("our_method")
    assert claims[("train-time-vs-hac", "Mip-NeRF360")].paper == pytest.approx(
        100 * (table5.loc["predictgs", "train_time_s"] / table5.loc["hac", "train_time_s"] - 1), abs=0.006)
    assert claims[("fps-vs-hac", "Mip-NeRF360")].paper == pytest.approx(
        table5.loc["predictgs", "test_fps"] / table5.loc["hac", "test_fps"], abs=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"relation": "slope"}, "unknown relation"),
        ({"expect": "=="}, "expect must be"),
        ({"paper": 5.0}, "not on the claimed side"),
        ({"metric": "beauty"}, "unknown metric"),
        ({"a": {"method": "predictgs", "settings": {"voxel": 1}}}, "unknown setting"),
        ({"b": {"lmbda": 0.004}}, "an arm needs a method"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_a_bad_claim_is_an_error_naming_it(tmp_path, change, message):
    claim = {"id": "c1", "statement": "s", "source": "Table 1", "benchmark": "any", "relation": "delta",
             "metric": "psnr", "a": {"method": "predictgs"}, "b": {"method": "hac"}, "expect": "<", "paper": -1.0}
    claim.update(change)
    with pytest.raises(ReportError, match=message):
        claims_from(yaml.safe_dump({"claims": [claim]}), tmp_path)


def test_an_ordering_needs_one_paper_value_per_pair_and_ids_are_unique(tmp_path):
    claim = {"id": "o", "statement": "s", "source": "Table 6", "benchmark": "any", "relation": "ordering",
             "metric": "psnr", "arms": [{"method": "hac"}, {"method": "predictgs"}, {"method": "scaffold"}],
             "expect": ">", "paper": [0.5]}
    with pytest.raises(ReportError, match="2 number"):
        claims_from(yaml.safe_dump({"claims": [claim]}), tmp_path)
    claim["paper"] = [0.5, 0.1]
    with pytest.raises(ReportError, match="appears twice"):
        claims_from(yaml.safe_dump({"claims": [claim, claim]}), tmp_path)
    with pytest.raises(ReportError, match="non-empty list"):
        claims_from("claims: []\n", tmp_path)


# ---------------------------------------------------------------------------------------------------
# The verdict rules


def test_spread_is_min_max_up_to_three_seeds_then_a_bootstrap_interval():
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0, "min-max")
    values = [-10.0, -3.0, -4.0, -5.0, -1.0]
    mean, low, high, kind = spread(values)
    assert kind == "bootstrap 90%" and mean == pytest.approx(-4.6)
    assert min(values) < low < mean < high < max(values)
    assert spread(values) == (mean, low, high, kind)  # a fixed generator: the same interval every time
    assert math.isnan(spread([])[0])


@pytest.mark.parametrize(
    "values, expect, paper, expected",
    [
        ({0: -5.0, 1: -3.0, 2: -4.0}, "<", -16.91, HOLDS),  # all seeds below 0 (smaller than the paper)
        ({0: 2.0, 1: 3.0, 2: 1.0}, "<", -16.91, DOES_NOT_HOLD),  # all seeds on the other side
        ({0: -1.0, 1: 0.5, 2: -0.2}, "<", -16.91, DOES_NOT_HOLD),  # no effect within, the paper's value not
        ({0: -10.0, 1: 5.0, 2: -2.0}, "<", -3.81, INCONCLUSIVE),  # both within
        ({0: -0.2, 1: 0.4}, ">", None, INCONCLUSIVE),  # no paper value: no effect within
        ({0: 0.0, 1: -0.3}, "<=", None, HOLDS),  # "unchanged or lower": no effect belongs to the claim
        ({0: 0.1, 1: 0.3}, "<=", None, DOES_NOT_HOLD),
        ({0: -0.1, 1: 0.3}, "<=", None, INCONCLUSIVE),
        ({0: 1.2, 1: 1.1, 2: 1.3}, ">", None, HOLDS),
        ({0: -4.0}, "<", -3.81, INSUFFICIENT),  # one seed: no spread
        ({}, "<", -3.81, INSUFFICIENT),
    ],
)
def test_verdict_rules(values, expect, paper, expected):
    outcome = verdict(values, expect, 0.0, paper)
    assert outcome.verdict == expected, outcome.reason
    assert outcome.reason.endswith(".") and outcome.reason[0].isupper()


def test_verdict_on_a_ratio_uses_one_as_no_effect():
    assert verdict({0: 0.8, 1: 0.85}, "<", 1.0, 0.8163).verdict == HOLDS
    assert verdict({0: 0.95, 1: 1.05}, "<", 1.0, 0.8163).verdict == DOES_NOT_HOLD  # 1 within, 0.82 not
    assert verdict({0: 0.7, 1: 1.05}, "<", 1.0, 0.8163).verdict == INCONCLUSIVE
    assert verdict({0: 1.1, 1: 1.2}, "<", 1.0, 0.8163).verdict == DOES_NOT_HOLD


def test_one_seed_is_insufficient_data_with_the_value_in_the_reason():
    outcome = verdict({2: -4.0}, "<", 0.0, -3.81, fmt=lambda v: f"{v:+.2f}%")
    assert outcome.verdict == INSUFFICIENT and "2: -4.00%" in outcome.reason and "at least 2" in outcome.reason
    assert outcome.mean == -4.0


def test_ordering_verdict_from_its_pairs():
    def pair(kind):
        return verdict({0: 1.0, 1: 2.0} if kind == HOLDS else {0: -1.0, 1: -2.0} if kind == DOES_NOT_HOLD
                       else {0: -1.0, 1: 2.0} if kind == INCONCLUSIVE else {0: 1.0}, ">", 0.0)

    assert ordering_verdict([pair(HOLDS), pair(HOLDS)]) == HOLDS
    assert ordering_verdict([pair(HOLDS), pair(INCONCLUSIVE)]) == INCONCLUSIVE
    assert ordering_verdict([pair(INCONCLUSIVE), pair(DOES_NOT_HOLD)]) == DOES_NOT_HOLD
    assert ordering_verdict([pair(DOES_NOT_HOLD), pair(INSUFFICIENT)]) == INSUFFICIENT


# ---------------------------------------------------------------------------------------------------
# Relations computed by hand on constructed runs


BD_CLAIM = """
claims:
  - id: bd
    statement: fewer bits than HAC
    source: Table 1
    benchmark: Mip-NeRF360
    relation: bd_rate
    method: predictgs
    anchor: hac
    expect: "<"
    paper: -16.91
"""


def straight_line_runs(offsets: dict[int, float], benchmark="synth_outdoor", shift=1.0) -> list[dict]:
    """HAC: ln(size) = 2 + 0.5 PSNR at PSNR 30 and 34; Predict-GS: ln(size) = c_s + 0.52 PSNR at PSNR 31 and 35
    (per seed s). PCHIP through two points is the straight line, so the mean log-size gap over the shared
    PSNR interval [31, 34] (75% of each curve's range) is (c_s - 2) + 0.02 * 32.5. ``shift``: Predict-GS's
    PSNRs are 30 + shift and 34 + shift."""
    rows = []
    for seed, offset in offsets.items():
        for lmbda, psnr in ((0.004, 30.0), (0.001, 34.0)):
            rows.append(run("hac", benchmark, lmbda=lmbda, seed=seed, psnr=psnr, size=math.exp(2 + 0.5 * psnr)))
        for lmbda, psnr in ((0.004, 30.0 + shift), (0.0005, 34.0 + shift)):
            rows.append(run("predictgs", benchmark, lmbda=lmbda, seed=seed, psnr=psnr,
                            size=math.exp(offset + 0.52 * psnr)))
    return rows


def test_bd_rate_per_seed_by_hand(tmp_path):
    offsets = {0: 1.0, 1: 1.1, 2: 1.2}
    verdicts, per_seed = evaluate_claims(table(straight_line_runs(offsets)), claims_from(BD_CLAIM, tmp_path),
                                         defaults=DEFAULTS)
    expected = {seed: 100 * (math.exp(c - 2 + 0.02 * 32.5) - 1) for seed, c in offsets.items()}
    values = per_seed[per_seed["quantity"] == "BD-rate [%]"].set_index("seed")["value"].to_dict()
    assert values == pytest.approx(expected, rel=1e-9)
    # beside each value, the PSNR overlap it rests on: [31, 34] is 75% of both curves' ranges
    overlap = per_seed[per_seed["quantity"].str.startswith("PSNR overlap")].set_index("seed")
    assert overlap["value"].to_dict() == pytest.approx({0: 75.0, 1: 75.0, 2: 75.0})
    assert overlap["note"].iloc[0] == "the curves share 75% of hac's quality range and 75% of predictgs's"
    row = one(verdicts, "bd", "synth_outdoor")
    assert row["paper_benchmark"] == "Mip-NeRF360" and row["seeds"] == 3
    assert (row["ours_low"], row["ours_high"]) == pytest.approx((expected[0], expected[2]))
    assert row["ours_mean"] == pytest.approx(np.mean(list(expected.values())))
    assert row["verdict"] == HOLDS  # -29.5% to -13.9%: all below 0
    assert "Warning" not in row["reason"]  # 75% overlap: no warning
    # Predict-GS worse in every seed: the opposite of the claim.
    verdicts, _ = evaluate_claims(table(straight_line_runs({0: 1.5, 1: 1.6})), claims_from(BD_CLAIM, tmp_path),
                                  defaults=DEFAULTS)
    assert one(verdicts, "bd")["verdict"] == DOES_NOT_HOLD


def test_bd_rate_from_curves_that_barely_overlap_is_inconclusive(tmp_path):
    """Below 50% of a curve's PSNR range a BD-rate decides nothing; below 75% its verdict warns."""
    claims = claims_from(BD_CLAIM, tmp_path)
    offsets = {0: 1.0, 1: 1.1, 2: 1.2}  # Predict-GS far cheaper in every seed
    # shift 1.6: the curves share [31.6, 34], 60% of each range: holds, with a warning
    row = one(evaluate_claims(table(straight_line_runs(offsets, shift=1.6)), claims, defaults=DEFAULTS)[0], "bd")
    assert row["verdict"] == HOLDS and row["ours_high"] < 0
    assert "Warning: the curves share less than 75% of a curve's PSNR range (seed 0: the curves share 60% of " \
           "hac's quality range and 60% of predictgs's;" in row["reason"]
    # shift 2.4: they share [32.4, 34], 40%: the same direction in every seed, but inconclusive
    verdicts, per_seed = evaluate_claims(table(straight_line_runs(offsets, shift=2.4)), claims, defaults=DEFAULTS)
    row = one(verdicts, "bd")
    assert row["verdict"] == INCONCLUSIVE and row["ours_high"] < 0 and row["seeds"] == 3
    assert "Inconclusive all the same: the BD-rate rests on less than 50% of a curve's PSNR range (seed 0: the " \
           "curves share 40% of hac's quality range and 40% of predictgs's" in row["reason"]
    overlap = per_seed[per_seed["quantity"].str.startswith("PSNR overlap")]
    assert overlap["value"].tolist() == pytest.approx([40.0, 40.0, 40.0])
    # one seed below 50% is enough; the opposite direction is made inconclusive too
    rows = straight_line_runs({0: 1.5, 1: 1.6}, shift=1.0)
    rows = [r for r in rows if r["seed"] == 0] + straight_line_runs({1: 1.6}, shift=2.4)
    row = one(evaluate_claims(table(rows), claims, defaults=DEFAULTS)[0], "bd")
    assert row["verdict"] == INCONCLUSIVE and row["ours_low"] > 0 and "(seed 1: " in row["reason"]
    # one seed stays insufficient data, whatever the overlap
    row = one(evaluate_claims(table(straight_line_runs({0: 1.0}, shift=2.4)), claims, defaults=DEFAULTS)[0], "bd")
    assert row["verdict"] == INSUFFICIENT


def test_bd_rate_of_a_single_seed_and_of_a_missing_anchor_is_insufficient_data(tmp_path):
    claims = claims_from(BD_CLAIM, tmp_path)
    verdicts, _ = evaluate_claims(table(straight_line_runs({0: 1.0})), claims, defaults=DEFAULTS)
    row = one(verdicts, "bd")
    assert row["verdict"] == INSUFFICIENT and row["seeds"] == 1 and "One training seed" in row["reason"]
    no_hac = [r for r in straight_line_runs({0: 1.0, 1: 1.1}) if r["method"] != "hac"]
    row = one(evaluate_claims(table(no_hac), claims, defaults=DEFAULTS)[0], "bd")
    assert row["verdict"] == INSUFFICIENT and row["reason"] == "No runs of hac on synth_outdoor."
    # A benchmark nobody stands in for: no row for it; a paper benchmark without runs: one row saying so.
    elsewhere = straight_line_runs({0: 1.0, 1: 1.1}, benchmark="synth_indoor")
    row = one(evaluate_claims(table(elsewhere), claims, defaults=DEFAULTS)[0], "bd")
    assert row["verdict"] == INSUFFICIENT and row["reason"] == "No runs on Mip-NeRF360 or a stand-in for it."


RATIO_CLAIMS = """
claims:
  - id: scaffold-size
    statement: smaller than Scaffold-GS
    source: Table 1
    benchmark: Mip-NeRF360
    relation: ratio
    metric: size
    a: {method: scaffold}
    b: {method: predictgs, lmbda: 0.004}
    expect: ">"
    paper: 20.02
  - id: 3dgs-size
    statement: smaller than 3DGS
    source: Table 1
    benchmark: Mip-NeRF360
    relation: ratio
    metric: size
    a: {method: 3dgs}
    b: {method: predictgs, lmbda: 0.004}
    expect: ">"
    paper: 57.89
  - id: train-time
    statement: trains faster than HAC
    source: Table 5
    benchmark: Mip-NeRF360
    relation: change
    metric: train_seconds
    a: {method: predictgs, lmbda: 0.004}
    b: {method: hac, lmbda: 0.004}
    expect: "<"
    paper: -3.81
"""


def test_ratio_and_change_are_of_the_dataset_means_per_seed(tmp_path):
    rows = []
    for seed, (scaffold, ours, ours_time, hac_time) in enumerate([((100e6, 300e6), (4e6, 16e6), 90.0, 100.0),
                                                                  ((120e6, 280e6), (5e6, 15e6), 99.0, 100.0),
                                                                  ((90e6, 270e6), (3e6, 15e6), 110.0, 100.0)]):
        for scene, s_size, o_size in zip(("a", "b"), scaffold, ours):
            rows.append(run("scaffold", scene=scene, lmbda=0.0, seed=seed, size=s_size))
            rows.append(run("predictgs", scene=scene, seed=seed, size=o_size, train_seconds=ours_time))
            rows.append(run("hac", scene=scene, seed=seed, size=o_size * 1.2, train_seconds=hac_time))
    verdicts, per_seed = evaluate_claims(table(rows), claims_from(RATIO_CLAIMS, tmp_path), defaults=DEFAULTS)
    ratios = per_seed[per_seed["claim"] == "scaffold-size"].set_index("seed")["value"]
    # The ratio of the means over scenes (200/10, 200/10, 180/9), not the mean of per-scene ratios.
    assert ratios.to_dict() == pytest.approx({0: 20.0, 1: 20.0, 2: 20.0})
    assert one(verdicts, "scaffold-size")["verdict"] == HOLDS
    changes = per_seed[per_seed["claim"] == "train-time"].set_index("seed")["value"]
    assert changes.to_dict() == pytest.approx({0: -10.0, 1: -1.0, 2: 10.0})
    row = one(verdicts, "train-time")
    assert row["verdict"] == INCONCLUSIVE and "-3.81%" in row["reason"]
    # No 3DGS runs: insufficient data, named; with 3DGS runs the same claim is computed, unchanged.
    row = one(verdicts, "3dgs-size")
    assert row["verdict"] == INSUFFICIENT and row["reason"] == "No runs of 3dgs on synth_outdoor."
    with_3dgs = rows + [run("3dgs", scene=s, lmbda=0.0, seed=seed, size=600e6, method_label="3DGS")
                        for s in ("a", "b") for seed in range(3)]
    verdicts, per_seed = evaluate_claims(table(with_3dgs), claims_from(RATIO_CLAIMS, tmp_path), defaults=DEFAULTS)
    row = one(verdicts, "3dgs-size")
    assert row["verdict"] == HOLDS and row["relation"] == "size of 3DGS / predictgs"
    assert per_seed[per_seed["claim"] == "3dgs-size"]["value"].tolist() == pytest.approx([60.0, 60.0, 600 / 9])


def test_relations_use_the_scenes_every_arm_has_in_a_seed(tmp_path):
    rows = [run("scaffold", scene="a", lmbda=0.0, seed=0, size=100e6),
            run("scaffold", scene="b", lmbda=0.0, seed=0, size=900e6),
            run("predictgs", scene="a", seed=0, size=5e6),  # no scene b for Predict-GS in seed 0
            run("scaffold", scene="a", lmbda=0.0, seed=1, size=100e6), run("predictgs", scene="a", seed=1, size=4e6)]
    _, per_seed = evaluate_claims(table(rows), claims_from(RATIO_CLAIMS, tmp_path), defaults=DEFAULTS)
    assert per_seed[per_seed["claim"] == "scaffold-size"].set_index("seed")["value"].to_dict() == pytest.approx(
        {0: 20.0, 1: 25.0})


ABLATION_CLAIMS = """
claims:
  - id: schedule
    statement: cosine > linear > none
    source: Table 6
    benchmark: any
    paper_benchmark: Mip-NeRF360
    relation: ordering
    metric: psnr
    arms:
      - {method: predictgs, lmbda: 0.004, settings: {schedule: none}, label: none}
      - {method: predictgs, lmbda: 0.004, settings: {schedule: linear}, label: linear}
      - {method: predictgs, lmbda: 0.004, settings: {schedule: cosine}, label: cosine}
    expect: ">"
    paper: [0.72, 0.10]
  - id: components
    statement: each component adds quality
    source: Table 4
    benchmark: any
    relation: ordering
    metric: psnr
    arms:
      - {method: predictgs_sfp_only, lmbda: 0.004}
      - {method: predictgs_no_pt, lmbda: 0.004}
      - {method: predictgs, lmbda: 0.004}
    expect: ">"
    paper: [1.40, 0.17]
  - id: residual
    statement: below 25 loses quality
    source: Fig. 6
    benchmark: any
    relation: delta
    metric: psnr
    a: {method: predictgs, lmbda: 0.004, settings: {residual_dim: 25}}
    b: {method: predictgs, lmbda: 0.004, settings: {residual_dim: 10}}
    expect: ">"
"""


def schedule_runs(psnrs: dict[int, tuple[float, float, float]], benchmark="synth_object") -> list[dict]:
    rows = []
    for seed, values in psnrs.items():
        for schedule, psnr in zip(("none", "linear", "cosine"), values):
            rows.append(run("predictgs", benchmark, seed=seed, psnr=psnr, schedule=schedule))
    return rows


def test_ordering_by_hand(tmp_path):
    psnrs = {0: (23.0, 23.5, 24.0), 1: (23.1, 23.7, 23.6), 2: (22.9, 23.4, 23.9)}  # seed 1: cosine < linear
    rows = schedule_runs(psnrs) + [run("predictgs", "synth_object", seed=s, psnr=20.0, residual_dim=10) for s in psnrs]
    verdicts, per_seed = evaluate_claims(table(rows), claims_from(ABLATION_CLAIMS, tmp_path), defaults=DEFAULTS)
    row = one(verdicts, "schedule", "synth_object")
    assert row["ours_mean"] == pytest.approx(2 / 3) and row["ours"].startswith("ordering in 2/3 seeds")
    pairs = per_seed[per_seed["claim"] == "schedule"]
    linear = pairs[pairs["quantity"] == "linear vs none"].set_index("seed")["value"]
    cosine = pairs[pairs["quantity"] == "cosine vs linear"].set_index("seed")["value"]
    assert linear.to_dict() == pytest.approx({0: 0.5, 1: 0.6, 2: 0.5})
    assert cosine.to_dict() == pytest.approx({0: 0.5, 1: -0.1, 2: 0.5})
    # linear vs none holds; cosine vs linear spans -0.1..0.5, which holds 0 and the paper's 0.10.
    assert row["verdict"] == INCONCLUSIVE
    assert "linear vs none holds" in row["reason"] and "cosine vs linear is inconclusive" in row["reason"]
    # The sweep run (residual 10) is not one of the schedule arms, and the default run is the cosine arm.
    residual = one(verdicts, "residual", "synth_object")
    assert residual["verdict"] == HOLDS and residual["ours_mean"] == pytest.approx(
        np.mean([24.0 - 20.0, 23.6 - 20.0, 23.9 - 20.0]))
    # Every seed reversed: does not hold.
    reversed_ = schedule_runs({0: (24.0, 23.5, 23.0), 1: (24.1, 23.4, 23.0)})
    row = one(evaluate_claims(table(reversed_), claims_from(ABLATION_CLAIMS, tmp_path), defaults=DEFAULTS)[0],
              "schedule")
    assert row["verdict"] == DOES_NOT_HOLD and row["ours"].startswith("ordering in 0/2 seeds")
    # Every seed in order: holds.
    ordered = schedule_runs({0: (23.0, 23.5, 24.0), 1: (22.0, 23.0, 23.2)})
    assert one(evaluate_claims(table(ordered), claims_from(ABLATION_CLAIMS, tmp_path), defaults=DEFAULTS)[0],
               "schedule")["verdict"] == HOLDS


def test_missing_ablation_runs_are_insufficient_data_not_an_error(tmp_path):
    only_main = [run("predictgs", "synth_object", seed=s) for s in (0, 1)] + [run("hac", "synth_object", seed=s)
                                                                            for s in (0, 1)]
    verdicts, _ = evaluate_claims(table(only_main), claims_from(ABLATION_CLAIMS, tmp_path), defaults=DEFAULTS)
    components = one(verdicts, "components")
    assert components["verdict"] == INSUFFICIENT and components["benchmark"] == ""
    assert components["reason"] == "No runs of predictgs_sfp_only, predictgs_no_pt."
    schedule = one(verdicts, "schedule")
    assert "predictgs with schedule=none, predictgs with schedule=linear" in schedule["reason"]
    # No runs at all.
    empty = pd.DataFrame(columns=["method", "benchmark", "scene", "lmbda"])
    verdicts, per_seed = evaluate_claims(empty, load_claims(settings=DEFAULTS), defaults=DEFAULTS)
    assert (verdicts["verdict"] == INSUFFICIENT).all() and per_seed.empty


def test_a_missing_seed_is_named(tmp_path):
    rows = [r for r in straight_line_runs({0: 1.0, 1: 1.1, 2: 1.2}) if not (r["seed"] == 2 and r["method"] == "hac")]
    verdicts, _ = evaluate_claims(table(rows), claims_from(BD_CLAIM, tmp_path), defaults=DEFAULTS, seeds=[0, 1, 2])
    row = one(verdicts, "bd")
    assert row["seeds"] == 2 and row["verdict"] == HOLDS and "No value for training seed(s) 2." in row["reason"]


# ---------------------------------------------------------------------------------------------------
# The writer


def test_write_verdicts_from_run_summaries(tmp_path):
    runs = tmp_path / "runs"
    for index, row in enumerate(straight_line_runs({0: 1.0})):
        (runs / str(index)).mkdir(parents=True)
        (runs / str(index) / "summary.json").write_text(json.dumps({k: v for k, v in row.items() if k != "path"}))
    out = tmp_path / "out"
    verdicts = write_verdicts(sorted(runs.rglob("summary.json")), CLAIMS_FILE, out / "verdicts.csv",
                              out / "verdicts.md", out / "verdicts_per_seed.csv", defaults=DEFAULTS, seeds=[0],
                              target="reproduce_tables")
    assert list(pd.read_csv(out / "verdicts.csv").columns) == VERDICT_COLUMNS
    assert list(pd.read_csv(out / "verdicts_per_seed.csv").columns) == PER_SEED_COLUMNS
    assert (verdicts["verdict"] == INSUFFICIENT).all()  # one seed decides nothing
    bd = one(verdicts, "bdrate-vs-hac", "synth_outdoor")
    assert "One training seed (0: " in bd["reason"]
    markdown = (out / "verdicts.md").read_text()
    assert markdown.startswith("# Verdicts")
    assert "speak about the embedded scale only" in markdown and "make verdicts" in markdown
    assert "| **insufficient data** |" in markdown
    # No runs at all: still files, every claim insufficient data.
    verdicts = write_verdicts([], CLAIMS_FILE, out / "v2.csv", out / "v2.md", out / "v2_seeds.csv", defaults=DEFAULTS)
    assert (verdicts["verdict"] == INSUFFICIENT).all() and (out / "v2.md").is_file()
