"""The paper's claims tested on our runs: each claim is a relation between methods or settings, measured
on our runs once per training seed, summarised as a mean and a spread, and given a verdict.

Claims (``results/paper/claims.yaml``, format in its header): a statement, its source, the paper's
benchmark, a relation, its arms, the claimed side of "no effect" (``expect``) and the paper's value.
Our counterpart is always the same relation on our runs, never our absolute numbers beside the paper's.

Where a claim is tested. A claim on a paper benchmark (``benchmark: Mip-NeRF360``) is tested on each of
our benchmarks that is that benchmark or stands in for it (``report.paper``: ``mipnerf360`` or
``synth_outdoor``, or a benchmark a workflow configuration declares ``stands_in_for`` it); ``benchmark: any`` (the ablations) on every benchmark where all of its arms were run.

Relations, per training seed s, on dataset means over the scenes that every arm has in seed s:

- ``bd_rate``: BD-rate [%] of ``method`` against ``anchor``, PSNR against size over all their rate points
  (main runs, pchip; ``report.bdrate``); no effect: 0. Its PSNR overlap (the interval both curves cover,
  as a fraction of each curve's range) is recorded per seed beside it.
- ``change``: 100 * (m(a) / m(b) - 1) [%]; no effect: 0.
- ``ratio``: m(a) / m(b); no effect: 1.
- ``delta``: m(a) - m(b); no effect: 0.
- ``ordering``: ``arms`` in the claimed increasing order of the metric; each adjacent pair (next against
  previous) is a ``delta`` or ``change`` relation (``pairs``); in a seed, the ordering holds when every
  pair is on the claimed side.

An arm's runs: its method at its lambda (every lambda when omitted); for Predict-GS (``DEFAULTS_METHOD``)
the swept settings at the paper's values (``defaults``, which the caller takes from the method's
configuration), except those the arm sets; other methods' runs as they are.

Spread. With n seeds that have a value: n <= 3: [min, max] (``MIN_MAX``); n >= 4: the bootstrap 90%
percentile interval of the mean (``BOOTSTRAP``, ``BOOTSTRAP_SAMPLES`` resamples, a fixed generator).

Verdicts (``verdict``), with no effect z, the claimed side (``expect``) and the paper's value p (if given):

- **insufficient data**: fewer than ``MIN_SEEDS`` seeds with a value (one seed has no spread), or runs
  missing (the reason names them);
- **holds**: the whole interval is on the claimed side of z (``>``: low > z; ``>=``: low >= z);
- **does not hold**: the whole interval is on the other side of z (``>`` and ``>=``: high < z); or it
  contains z but not p: no effect is compatible with our runs and the paper's effect is not;
- **inconclusive**: otherwise: the interval contains z and p (or the paper gives no value).

A BD-rate verdict that would be **holds** or **does not hold** is **inconclusive** when, in any seed, the
two curves share less than ``OVERLAP_INCONCLUSIVE`` (50%) of a curve's PSNR range: the estimate then rests
on a small part of the curves. Below ``OVERLAP_WARNING`` (75%) the reason carries a warning.

An ordering holds when each of its pairs holds, does not hold when one of its pairs does not hold, is
insufficient data when one pair is, and is inconclusive otherwise; its value is the number of seeds in
which the whole ordering holds. On a stand-in a verdict speaks about that benchmark's scale only
(``report.scale``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from predictgs.errors import ReportError
from predictgs.parse import ParseError, load_yaml_text
from predictgs.report.bdrate import OVERLAP_INCONCLUSIVE, OVERLAP_WARNING, Overlap, bd_rate, bd_rate_overlap
from predictgs.report.paper import PAPER_DIR, STAND_IN, benchmarks_standing_for, paper_benchmark_of
from predictgs.report.tables import at_defaults, benchmark_means, feature_bits, method_labels

CLAIMS_FILE = PAPER_DIR / "claims.yaml"
ANY = "any"
DEFAULTS_METHOD = "predictgs"  # the method whose swept settings ``defaults`` holds

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, INSUFFICIENT = "holds", "does not hold", "inconclusive", "insufficient data"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, INSUFFICIENT)
MIN_SEEDS = 2
MIN_MAX, BOOTSTRAP = "min-max", "bootstrap 90%"
BOOTSTRAP_SAMPLES = 5000
BOOTSTRAP_LEVEL = 0.90

RELATIONS = ("bd_rate", "change", "ratio", "delta", "ordering")
PAIR_RELATIONS = ("delta", "change")
EXPECTS = (">", "<", ">=", "<=")
NO_EFFECT = {"bd_rate": 0.0, "change": 0.0, "ratio": 1.0, "delta": 0.0}
# metric -> (run-table column, printed name, unit of a difference)
METRICS = {
    "psnr": ("psnr", "PSNR", "dB"),
    "ssim": ("ssim", "SSIM", ""),
    "lpips": ("lpips", "LPIPS", ""),
    "size": ("size_bytes", "size", "B"),
    "feature_bits": ("feature_bits", "feature bits", "bit"),
    "train_seconds": ("train_seconds", "training time", "s"),
    "fps": ("fps", "test FPS", "FPS"),
    "encode_seconds": ("encode_seconds", "encoding time", "s"),
    "decode_seconds": ("decode_seconds", "decoding time", "s"),
}
VERDICT_COLUMNS = [
    "claim", "benchmark", "paper_benchmark", "statement", "relation", "expect", "paper", "ours", "ours_mean",
    "ours_low", "ours_high", "spread", "seeds", "verdict", "reason", "source",
]
PER_SEED_COLUMNS = ["claim", "benchmark", "quantity", "seed", "value", "note"]
BD_RATE_QUANTITY = "BD-rate [%]"
OVERLAP_QUANTITY = "PSNR overlap [% of the less covered curve]"  # per seed, beside a BD-rate


# ---------------------------------------------------------------------------------------------------
# The claims file


@dataclass(frozen=True)
class Arm:
    """One side of a relation: a method at a rate point, with some of Predict-GS's settings set."""

    method: str
    lmbda: float | None = None
    settings: Mapping[str, object] = field(default_factory=dict)
    label: str | None = None

    def name(self, labels: Mapping[str, str]) -> str:
        if self.label:
            return self.label
        base = labels.get(self.method, self.method)
        extra = ", ".join(f"{key}={value}" for key, value in self.settings.items())
        return f"{base} ({extra})" if extra else base

    def describe(self) -> str:
        """For messages: the method key with its settings."""
        extra = ", ".join(f"{key}={value}" for key, value in self.settings.items())
        return f"{self.method} with {extra}" if extra else self.method


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str
    benchmark: str  # a paper benchmark, or ANY
    relation: str
    expect: str
    paper: float | tuple[float, ...] | None = None
    metric: str | None = None
    method: str | None = None  # bd_rate
    anchor: str | None = None  # bd_rate
    arms: tuple[Arm, ...] = ()  # (a, b) for change / ratio / delta; the ordering's arms
    pairs: str = "delta"  # ordering
    paper_benchmark: str | None = None  # for benchmark: any

    @property
    def no_effect(self) -> float:
        return NO_EFFECT[self.pair_relation]

    @property
    def pair_relation(self) -> str:
        """The relation of one value (an ordering's pairs; else the claim's own)."""
        return self.pairs if self.relation == "ordering" else self.relation

    @property
    def needed_methods(self) -> list[str]:
        if self.relation == "bd_rate":
            return [self.method, self.anchor]
        return list(dict.fromkeys(arm.method for arm in self.arms))


def load_claims(path: str | Path = CLAIMS_FILE, settings: Iterable[str] | None = None) -> list[Claim]:
    """The claims of a claims file, checked (``ReportError`` naming the claim on any problem).
    ``settings``: the names an arm may set (Predict-GS's swept settings); unchecked when None."""
    path = Path(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ParseError, RecursionError) as error:
        raise ReportError(f"{path}: cannot read the claims ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list) or not data["claims"]:
        raise ReportError(f"{path}: expected a mapping with a non-empty list 'claims'")
    claims = [_claim(entry, index, path, settings) for index, entry in enumerate(data["claims"])]
    seen = set()
    for claim in claims:
        key = (claim.id, claim.benchmark)
        if key in seen:
            raise ReportError(f"{path}: claim {claim.id!r} appears twice for benchmark {claim.benchmark!r}")
        seen.add(key)
    return claims


def _claim(entry, index: int, path: Path, settings) -> Claim:
    where = f"{path}: claim {entry.get('id', index) if isinstance(entry, dict) else index}"
    if not isinstance(entry, dict):
        raise ReportError(f"{where}: expected a mapping")

    def need(key):
        if entry.get(key) in (None, ""):
            raise ReportError(f"{where}: missing {key!r}")
        return entry[key]

    relation = need("relation")
    if relation not in RELATIONS:
        raise ReportError(f"{where}: unknown relation {relation!r}; choose one of {', '.join(RELATIONS)}")
    expect = str(need("expect"))
    if expect not in EXPECTS:
        raise ReportError(f"{where}: expect must be one of {', '.join(EXPECTS)}, got {expect!r}")
    known = {"id", "statement", "source", "benchmark", "relation", "expect", "paper", "metric", "method",
             "anchor", "a", "b", "arms", "pairs", "paper_benchmark"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ReportError(f"{where}: unknown key(s) {', '.join(unknown)}")
    fields = dict(id=str(need("id")), statement=str(need("statement")), source=str(need("source")),
                  benchmark=str(need("benchmark")), relation=relation, expect=expect,
                  paper_benchmark=entry.get("paper_benchmark"))
    if relation == "bd_rate":
        fields.update(method=str(need("method")), anchor=str(need("anchor")))
    else:
        metric = need("metric")
        if metric not in METRICS:
            raise ReportError(f"{where}: unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        fields["metric"] = metric
        if relation == "ordering":
            arms = need("arms")
            if not isinstance(arms, list) or len(arms) < 2:
                raise ReportError(f"{where}: an ordering needs a list of at least 2 arms")
            pairs = entry.get("pairs", "delta")
            if pairs not in PAIR_RELATIONS:
                raise ReportError(f"{where}: pairs must be one of {', '.join(PAIR_RELATIONS)}, got {pairs!r}")
            fields.update(arms=tuple(_arm(a, where, settings) for a in arms), pairs=pairs)
        else:
            fields["arms"] = (_arm(need("a"), where, settings), _arm(need("b"), where, settings))
    claim = Claim(**fields)
    paper = entry.get("paper")
    if paper is not None:
        values = paper if isinstance(paper, list) else [paper]
        expected = len(claim.arms) - 1 if relation == "ordering" else 1
        if len(values) != expected or not all(isinstance(v, (int, float)) for v in values):
            raise ReportError(f"{where}: paper must be {expected} number(s), got {paper!r}")
        for value in values:
            if not on_claimed_side(float(value), claim.expect, claim.no_effect):
                raise ReportError(f"{where}: the paper's value {value} is not on the claimed side "
                                  f"({claim.expect} {claim.no_effect:g})")
        paper = tuple(float(v) for v in values) if relation == "ordering" else float(values[0])
        claim = replace(claim, paper=paper)
    return claim


def _arm(spec, where: str, settings) -> Arm:
    if not isinstance(spec, dict) or not spec.get("method"):
        raise ReportError(f"{where}: an arm needs a method, got {spec!r}")
    unknown = sorted(set(spec) - {"method", "lmbda", "settings", "label"})
    if unknown:
        raise ReportError(f"{where}: unknown arm key(s) {', '.join(unknown)}")
    arm_settings = dict(spec.get("settings") or {})
    if settings is not None:
        bad = sorted(set(arm_settings) - set(settings))
        if bad:
            raise ReportError(f"{where}: unknown setting(s) {', '.join(bad)}; choose from {', '.join(settings)}")
    lmbda = spec.get("lmbda")
    return Arm(method=str(spec["method"]), lmbda=None if lmbda is None else float(lmbda), settings=arm_settings,
               label=spec.get("label"))


# ---------------------------------------------------------------------------------------------------
# Spread and verdict of one relation


def on_claimed_side(value: float, expect: str, no_effect: float) -> bool:
    return {">": value > no_effect, "<": value < no_effect, ">=": value >= no_effect,
            "<=": value <= no_effect}[expect]


def spread(values: Sequence[float]) -> tuple[float, float, float, str]:
    """(mean, low, high, kind) of per-seed values: min-max for up to 3, else a bootstrap 90% interval."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return math.nan, math.nan, math.nan, ""
    mean = float(array.mean())
    if array.size <= 3:
        return mean, float(array.min()), float(array.max()), MIN_MAX
    rng = np.random.default_rng(0)
    means = rng.choice(array, size=(BOOTSTRAP_SAMPLES, array.size), replace=True).mean(axis=1)
    tail = (1 - BOOTSTRAP_LEVEL) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return mean, float(low), float(high), BOOTSTRAP


@dataclass
class Outcome:
    """The verdict of one relation: the values, their spread, the verdict and why."""

    values: dict[int, float]  # seed -> value
    verdict: str
    reason: str
    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    kind: str = ""


def verdict(values: Mapping[int, float], expect: str, no_effect: float, paper: float | None = None,
            *, fmt=lambda v: f"{v:+.3g}") -> Outcome:
    """The verdict on one relation from its per-seed values (see the module docstring); ``fmt`` prints a
    value in the reason."""
    values = {int(seed): float(v) for seed, v in values.items() if v is not None and math.isfinite(v)}
    mean, low, high, kind = spread(list(values.values()))
    outcome = Outcome(values=values, verdict=INSUFFICIENT, reason="", mean=mean, low=low, high=high, kind=kind)
    if len(values) < MIN_SEEDS:
        if values:
            (seed, value), = values.items()
            outcome.reason = (f"One training seed ({seed}: {fmt(value)}); a verdict needs at least {MIN_SEEDS} "
                              "seeds for a spread (the target `verdicts` runs 3).")
        else:
            outcome.reason = "No seed gives a value."
        return outcome
    n = len(values)
    if kind == MIN_MAX:
        span = f"All {n} seeds lie between {fmt(low)} and {fmt(high)}"
    else:
        span = f"The {kind} interval of the mean of {n} seeds is {fmt(low)} to {fmt(high)}"
    zero = fmt(no_effect) if no_effect else "0"
    paper_text = "" if paper is None else f" (paper: {fmt(paper)})"
    if on_claimed_side(low, expect, no_effect) and on_claimed_side(high, expect, no_effect):
        side = {"<": "below", "<=": "at most", ">": "above", ">=": "at least"}[expect]
        outcome.verdict, outcome.reason = HOLDS, f"{span}: {side} {zero}, as claimed{paper_text}."
    elif (high < no_effect) if expect in (">", ">=") else (low > no_effect):
        side = "below" if expect in (">", ">=") else "above"
        outcome.verdict = DOES_NOT_HOLD
        outcome.reason = f"{span}: {side} {zero}, the opposite of the claim{paper_text}."
    elif paper is not None and not low <= paper <= high:
        outcome.verdict = DOES_NOT_HOLD
        outcome.reason = f"{span}: no effect ({zero}) is within that range, the paper's {fmt(paper)} is not."
    elif paper is not None:
        outcome.verdict = INCONCLUSIVE
        outcome.reason = f"{span}: both no effect ({zero}) and the paper's {fmt(paper)} are within that range."
    else:
        outcome.verdict = INCONCLUSIVE
        outcome.reason = f"{span}: no effect ({zero}) is within that range (the paper prints no value)."
    return outcome


def ordering_verdict(pairs: Sequence[Outcome]) -> str:
    """An ordering's verdict from its pairs' verdicts (see the module docstring)."""
    verdicts = [pair.verdict for pair in pairs]
    if INSUFFICIENT in verdicts:
        return INSUFFICIENT
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE


# ---------------------------------------------------------------------------------------------------
# Measuring relations on runs


def prepare_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The run table with ``seed`` (runs that do not record one: 0, the CLI's default) and
    ``feature_bits`` columns."""
    runs = runs.copy()
    seeds = runs["seed"] if "seed" in runs else pd.Series(np.nan, index=runs.index)
    runs["seed"] = pd.to_numeric(seeds, errors="coerce").fillna(0).astype(int)
    runs["feature_bits"] = feature_bits(runs)
    return runs


def arm_runs(runs: pd.DataFrame, arm: Arm, defaults: Mapping) -> pd.DataFrame:
    """The runs of one arm (any benchmark, any seed)."""
    selected = runs[runs["method"] == arm.method]
    if arm.lmbda is not None:
        selected = selected[np.isclose(selected["lmbda"].astype(float), arm.lmbda, rtol=1e-9, atol=0)]
    if arm.settings:
        for name, value in arm.settings.items():
            if name not in selected:
                return selected.iloc[0:0]
            selected = selected[[_same_setting(v, value) for v in selected[name]]]
        others = [f for f in defaults if f not in arm.settings]
        selected = selected[at_defaults(selected, defaults, others)]
    elif arm.method == DEFAULTS_METHOD:
        selected = selected[at_defaults(selected, defaults)]
    return selected


def _same_setting(value, wanted) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(wanted, str) or isinstance(value, str):
        return str(value).strip().lower() == str(wanted).strip().lower()
    return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)


def arm_means(selected: pd.DataFrame, column: str) -> dict[int, pd.Series]:
    """seed -> (scene -> mean of ``column`` over the arm's runs of that scene)."""
    if selected.empty or column not in selected:
        return {}
    grouped = selected.groupby(["seed", "scene"])[column].mean()
    return {int(seed): values.droplevel(0) for seed, values in grouped.groupby(level=0)}


def paired_means(arms: Sequence[pd.DataFrame], column: str) -> dict[int, list[float]]:
    """seed -> the arms' dataset means over the scenes that every arm has in that seed."""
    per_arm = [arm_means(selected, column) for selected in arms]
    seeds = set.intersection(*(set(m) for m in per_arm)) if per_arm else set()
    result = {}
    for seed in sorted(seeds):
        scenes = set.intersection(*(set(m[seed].dropna().index) for m in per_arm))
        if scenes:
            result[seed] = [float(m[seed][sorted(scenes)].mean()) for m in per_arm]
    return result


def relate(relation: str, a: float, b: float) -> float:
    if relation == "delta":
        return a - b
    if b == 0:
        return math.nan
    return a / b if relation == "ratio" else 100.0 * (a / b - 1.0)


def bd_rate_per_seed(runs: pd.DataFrame, claim: Claim, defaults: Mapping
                     ) -> tuple[dict[int, float], dict[int, str], dict[int, Overlap]]:
    """seed -> BD-rate [%] of the claim's method against its anchor (dataset means per rate point),
    seed -> why a seed has no value, and seed -> the PSNR overlap of the two curves (seeds with a value)."""
    test = arm_runs(runs, Arm(claim.method), defaults)
    anchor = arm_runs(runs, Arm(claim.anchor), defaults)
    values, notes, overlaps = {}, {}, {}
    for seed in sorted(set(test["seed"]) & set(anchor["seed"])):
        curves = [benchmark_means(r[r["seed"] == seed], by=("method", "lmbda")) for r in (anchor, test)]
        try:
            values[seed] = bd_rate(curves[0]["size_bytes"], curves[0]["psnr"], curves[1]["size_bytes"],
                                   curves[1]["psnr"], anchor_name=claim.anchor, test_name=claim.method)
        except ReportError as error:
            notes[seed] = str(error)
            continue
        overlaps[seed] = bd_rate_overlap(curves[0]["psnr"], curves[1]["psnr"])
    return values, notes, overlaps


def overlap_rule(outcome: Outcome, overlaps: Mapping[int, Overlap], claim: Claim) -> Outcome:
    """A BD-rate verdict checked against the curves' overlap in each seed (module docstring): holds / does
    not hold become inconclusive when a seed's curves share less than 50% of a curve's PSNR range; below
    75% the reason warns."""
    if outcome.verdict == INSUFFICIENT:
        return outcome
    used = {seed: o for seed, o in sorted(overlaps.items()) if seed in outcome.values}
    short = {seed: o for seed, o in used.items() if o.inconclusive}
    warned = {seed: o for seed, o in used.items() if o.warning and not o.inconclusive}

    def listing(selected):
        return "; ".join(f"seed {seed}: {o.describe(claim.anchor, claim.method)}" for seed, o in selected.items())

    if short:
        if outcome.verdict != INCONCLUSIVE:
            outcome.reason += (f" Inconclusive all the same: the BD-rate rests on less than "
                               f"{OVERLAP_INCONCLUSIVE:.0%} of a curve's PSNR range ({listing(short)}).")
            outcome.verdict = INCONCLUSIVE
        else:
            outcome.reason += (f" The BD-rate rests on less than {OVERLAP_INCONCLUSIVE:.0%} of a curve's PSNR "
                               f"range ({listing(short)}).")
    if warned:
        outcome.reason += (f" Warning: the curves share less than {OVERLAP_WARNING:.0%} of a curve's PSNR range "
                           f"({listing(warned)}).")
    return outcome


# ---------------------------------------------------------------------------------------------------
# Evaluating the claims


@dataclass
class Row:
    """One verdict row (a claim on one of our benchmarks) and its per-seed values."""

    fields: dict
    per_seed: list[dict]


def evaluate_claims(
    runs: pd.DataFrame,
    claims: Sequence[Claim],
    *,
    defaults: Mapping,
    seeds: Sequence[int] | None = None,
    stand_ins: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(verdicts, per-seed values): one verdict row per claim and benchmark (``VERDICT_COLUMNS``), and
    every per-seed value behind them (``PER_SEED_COLUMNS``). ``seeds``: the training seeds the runs were
    meant to have (a reason names the missing ones); default: those present. ``stand_ins``: our benchmark
    -> the paper benchmark it stands in for, besides the synthetic ones (``report.paper``)."""
    runs = prepare_runs(runs) if len(runs) else runs
    labels = method_labels(runs) if len(runs) else {}
    benchmarks = sorted(runs["benchmark"].unique()) if len(runs) else []
    rows: list[Row] = []
    for claim in claims:
        if claim.benchmark == ANY:
            candidates = [b for b in benchmarks if _has_all_arms(runs[runs["benchmark"] == b], claim, defaults)]
            if not candidates:
                missing = _missing_arms(runs, claim, defaults)
                rows.append(_insufficient(claim, "", f"no runs of {missing}" if missing else
                                          "no benchmark has runs of all its arms", labels))
                continue
        else:
            candidates = benchmarks_standing_for(claim.benchmark, benchmarks, stand_ins)
            if not candidates:
                rows.append(_insufficient(claim, "", f"no runs on {claim.benchmark} or a stand-in for it", labels))
                continue
        for benchmark in candidates:
            on_benchmark = runs[runs["benchmark"] == benchmark]
            if _has_all_arms(on_benchmark, claim, defaults):
                rows.append(_evaluate(claim, benchmark, on_benchmark, defaults, labels, seeds))
            else:
                missing = _missing_arms(on_benchmark, claim, defaults)
                rows.append(_insufficient(claim, benchmark, f"no runs of {missing} on {benchmark}", labels))
    verdicts = pd.DataFrame([row.fields for row in rows], columns=VERDICT_COLUMNS)
    per_seed = pd.DataFrame([value for row in rows for value in row.per_seed], columns=PER_SEED_COLUMNS)
    return verdicts, per_seed


def _has_all_arms(runs: pd.DataFrame, claim: Claim, defaults: Mapping) -> bool:
    if claim.relation == "bd_rate":
        return all((runs["method"] == m).any() for m in claim.needed_methods)
    return all(len(arm_runs(runs, arm, defaults)) for arm in claim.arms)


def _missing_arms(runs: pd.DataFrame, claim: Claim, defaults: Mapping) -> str:
    if claim.relation == "bd_rate":
        absent = [m for m in claim.needed_methods if not len(runs) or not (runs["method"] == m).any()]
    else:
        absent = [arm.describe() for arm in claim.arms if not len(runs) or not len(arm_runs(runs, arm, defaults))]
    return ", ".join(dict.fromkeys(absent))


def _base_fields(claim: Claim, benchmark: str, labels: Mapping[str, str]) -> dict:
    paper_benchmark = claim.benchmark if claim.benchmark != ANY else (claim.paper_benchmark or "")
    if claim.paper is None:
        paper = ""
    elif isinstance(claim.paper, tuple):
        paper = "; ".join(_format(v, claim.pair_relation, claim.metric) for v in claim.paper)
    else:
        paper = _format(claim.paper, claim.relation, claim.metric)
    return {
        "claim": claim.id,
        "benchmark": benchmark,
        "paper_benchmark": paper_benchmark,
        "statement": claim.statement,
        "relation": describe_relation(claim, labels),
        "expect": (f"each pair {claim.expect} 0" if claim.relation == "ordering"
                   else f"{claim.expect} {claim.no_effect:g}"),
        "paper": paper,
        "ours": "",
        "ours_mean": math.nan,
        "ours_low": math.nan,
        "ours_high": math.nan,
        "spread": "",
        "seeds": 0,
        "verdict": INSUFFICIENT,
        "reason": "",
        "source": claim.source,
    }


def _insufficient(claim: Claim, benchmark: str, why: str, labels: Mapping[str, str]) -> Row:
    fields = _base_fields(claim, benchmark, labels)
    fields["reason"] = f"{why[0].upper()}{why[1:]}."
    return Row(fields, [])


def describe_relation(claim: Claim, labels: Mapping[str, str]) -> str:
    if claim.relation == "bd_rate":
        return f"BD-rate of {labels.get(claim.method, claim.method)} vs {labels.get(claim.anchor, claim.anchor)} [%]"
    _, metric, unit = METRICS[claim.metric]
    names = [arm.name(labels) for arm in claim.arms]
    if claim.relation == "ordering":
        return f"{metric}: " + " < ".join(names)
    a, b = names
    if claim.relation == "ratio":
        return f"{metric} of {a} / {b}"
    if claim.relation == "change":
        return f"{metric} of {a} vs {b} [%]"
    return f"{metric} of {a} - {b}" + (f" [{unit}]" if unit else "")


def _format(value: float, relation: str, metric: str | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if relation == "ratio":
        return f"{value:.3g}x"
    if relation in ("bd_rate", "change"):
        return f"{value:+.2f}%"
    unit = METRICS[metric][2] if metric else ""
    digits = 3 if metric in ("ssim", "lpips") else 2
    return f"{value:+.{digits}f}" + (f" {unit}" if unit and metric == "psnr" else "")


def _evaluate(claim: Claim, benchmark: str, runs: pd.DataFrame, defaults: Mapping, labels: Mapping[str, str],
              seeds: Sequence[int] | None) -> Row:
    """One claim on one benchmark whose runs include every arm."""
    fields = _base_fields(claim, benchmark, labels)
    per_seed: list[dict] = []
    expected = sorted(set(int(s) for s in seeds)) if seeds is not None else None

    def fmt(value, relation=claim.pair_relation):
        return _format(value, relation, claim.metric)

    def record(quantity: str, values: Mapping[int, float], notes: Mapping[int, str] | None = None) -> None:
        per_seed.extend(dict(claim=claim.id, benchmark=benchmark, quantity=quantity, seed=s, value=float(v), note="")
                        for s, v in values.items())
        per_seed.extend(dict(claim=claim.id, benchmark=benchmark, quantity=quantity, seed=s, value=math.nan,
                             note=f"not computed: {n}") for s, n in (notes or {}).items())

    if claim.relation == "bd_rate":
        values, notes, overlaps = bd_rate_per_seed(runs, claim, defaults)
        record(BD_RATE_QUANTITY, values, notes)
        record(OVERLAP_QUANTITY, {seed: 100 * o.fraction for seed, o in overlaps.items()})
        for entry in per_seed:
            if entry["quantity"] == OVERLAP_QUANTITY:
                entry["note"] = overlaps[entry["seed"]].describe(claim.anchor, claim.method)
        outcome = overlap_rule(verdict(values, claim.expect, claim.no_effect, claim.paper, fmt=fmt), overlaps, claim)
        if notes and outcome.verdict == INSUFFICIENT:
            outcome.reason += " Not computed in seed(s) " + "; ".join(f"{s}: {n}" for s, n in notes.items()) + "."
        return Row(_fill(fields, outcome, fmt, _missing_seeds(outcome, expected)), per_seed)

    means = paired_means([arm_runs(runs, arm, defaults) for arm in claim.arms], METRICS[claim.metric][0])
    names = [arm.name(labels) for arm in claim.arms]
    if claim.relation != "ordering":
        values = {seed: relate(claim.relation, a, b) for seed, (a, b) in means.items()}
        record(fields["relation"], values)
        outcome = verdict(values, claim.expect, claim.no_effect, claim.paper, fmt=fmt)
        return Row(_fill(fields, outcome, fmt, _missing_seeds(outcome, expected)), per_seed)

    # An ordering: each adjacent pair is one relation; the ordering's value is the seeds where all hold.
    pair_outcomes, pair_texts = [], []
    for index in range(len(claim.arms) - 1):
        values = {seed: relate(claim.pairs, m[index + 1], m[index]) for seed, m in means.items()}
        paper = claim.paper[index] if claim.paper else None
        outcome = verdict(values, claim.expect, claim.no_effect, paper, fmt=fmt)
        pair_outcomes.append(outcome)
        quantity = f"{names[index + 1]} vs {names[index]}"
        record(quantity, values)
        if outcome.values:
            pair_texts.append(f"{quantity}: {_interval_text(outcome, fmt)}")
    ordered = {seed: all(on_claimed_side(value, claim.expect, claim.no_effect) for value in pair_values)
               for seed, pair_values in _pair_values(pair_outcomes).items()}
    record("ordering holds", {seed: float(holds) for seed, holds in ordered.items()})
    result = ordering_verdict(pair_outcomes)
    n = len(ordered)
    summary = "; ".join([f"ordering in {sum(ordered.values())}/{n} seeds", *pair_texts])
    fields.update(
        ours=summary if n else "",
        ours_mean=sum(ordered.values()) / n if n else math.nan,
        seeds=n,
        spread=pair_outcomes[0].kind if n else "",
        verdict=result,
    )
    if result == INSUFFICIENT:
        fields["reason"] = next(p.reason for p in pair_outcomes if p.verdict == INSUFFICIENT)
    else:
        verdict_of = {HOLDS: "holds", DOES_NOT_HOLD: "does not hold", INCONCLUSIVE: "is inconclusive"}
        details = "; ".join(f"{names[i + 1]} vs {names[i]} {verdict_of[p.verdict]}"
                            for i, p in enumerate(pair_outcomes))
        fields["reason"] = f"The ordering holds in {sum(ordered.values())} of {n} seeds; pairwise: {details}."
    missing = _missing_seeds(pair_outcomes[0], expected)
    if missing:
        fields["reason"] += f" {missing}"
    return Row(fields, per_seed)


def _pair_values(pairs: Sequence[Outcome]) -> dict[int, list[float]]:
    """seed -> the value of every pair, for the seeds in which every pair has one."""
    seeds = set.intersection(*(set(pair.values) for pair in pairs)) if pairs else set()
    return {seed: [pair.values[seed] for pair in pairs] for seed in sorted(seeds)}


def _interval_text(outcome: Outcome, fmt) -> str:
    if len(outcome.values) == 1:
        return f"{fmt(outcome.mean)} (1 seed)"
    return f"{fmt(outcome.mean)} [{fmt(outcome.low)}, {fmt(outcome.high)}] ({len(outcome.values)} seeds)"


def _missing_seeds(outcome: Outcome, expected: Sequence[int] | None) -> str:
    if not expected:
        return ""
    absent = [s for s in expected if s not in outcome.values]
    return f"No value for training seed(s) {', '.join(map(str, absent))}." if absent else ""


def _fill(fields: dict, outcome: Outcome, fmt, missing_seeds: str) -> dict:
    fields.update(
        ours=_interval_text(outcome, fmt) if outcome.values else "",
        ours_mean=outcome.mean,
        ours_low=outcome.low,
        ours_high=outcome.high,
        spread=outcome.kind,
        seeds=len(outcome.values),
        verdict=outcome.verdict,
        reason=outcome.reason + (f" {missing_seeds}" if missing_seeds else ""),
    )
    return fields


def verdict_counts(verdicts: pd.DataFrame) -> dict[str, int]:
    return {name: int((verdicts["verdict"] == name).sum()) for name in VERDICTS}


def uses_stand_ins(benchmarks: Iterable[str], stand_ins: Mapping[str, str] | None = None) -> bool:
    """Whether any of our benchmarks is a stand-in (its verdicts speak about its own scale)."""
    return any(paper_benchmark_of(b, stand_ins)[1] == STAND_IN for b in benchmarks)


__all__ = [
    "ANY",
    "Arm",
    "CLAIMS_FILE",
    "Claim",
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "INSUFFICIENT",
    "MIN_SEEDS",
    "PER_SEED_COLUMNS",
    "VERDICTS",
    "VERDICT_COLUMNS",
    "evaluate_claims",
    "load_claims",
    "ordering_verdict",
    "spread",
    "verdict",
    "verdict_counts",
]
