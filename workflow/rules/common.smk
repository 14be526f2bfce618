# Shared definitions: scenes, runs, rate points, ablation variants and the per-run training config.
# The DAG is fully determined by the configuration; nothing here reads results.
import os
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

RESULTS = config["results_dir"]
ENV = "../../environment.yml"
PAPER_DIR = config.get("paper_dir") or os.path.join(workflow.basedir, "results", "paper")
PAPER_TABLES = sorted(str(p) for p in Path(PAPER_DIR).glob("*.csv"))
CLAIMS = os.path.join(PAPER_DIR, "claims.yaml")

# One run = (benchmark, scene, method, variant, lambda, training seed); one directory holds all of its files.
RUN = f"{RESULTS}/runs/{{benchmark}}/{{scene}}/{{method}}/{{variant}}/lambda{{lmbda}}/train_seed{{train_seed}}"
TRAIN_CONFIG = f"{RESULTS}/configs/{{benchmark}}/{{method}}/{{variant}}.yaml"
# Table sets: "tables" holds the main methods (reproduce_tables), "tables_extended" adds extended_methods
# (target extended_tables); their R-D plots go to plots/ and plots_extended/.
TABLES = f"{RESULTS}/{{tableset}}/{{benchmark}}"
PLOTS = {"tables": "plots", "tables_extended": "plots_extended"}
NO_RATE = "0"  # lambda tag of methods without an entropy model (scaffold): no --lmbda
# Training seeds: every run of reproduce_tables / ablations once per seed; the target `verdicts` repeats
# the same runs over its own seeds (a superset in the shipped configs, so seed 0 is shared).
TRAIN_SEEDS = list(config["train_seeds"])
VERDICT_SEEDS = list(config["verdicts"]["train_seeds"])
VERDICT_DIR = f"{RESULTS}/verdicts"

# GPU rules declare resources gpu=1 only when a GPU is configured, so CPU runs are never throttled.
GPU = 1 if str(config["device"]).startswith("cuda") else 0
THREADS = {step: config["threads"].get(step, 1) for step in ("train", "encode", "decode", "eval")}
EXTRA_ARGS = {step: config["extra_args"].get(step, "") for step in ("train", "encode", "decode", "eval")}

# Predict-GS settings of the paper, from the method's own configuration (the one source). A sweep value
# equal to its default is the main run (variant "default").
from predictgs.methods.predict_gs import paper_settings, setting_overrides

PREDICTGS_DEFAULTS = paper_settings()
SWEEPS = tuple(PREDICTGS_DEFAULTS)
SWEEP_TYPES = {name: type(value) for name, value in PREDICTGS_DEFAULTS.items()}
ABLATIONS = ("components",) + SWEEPS

# Jobs call the `predictgs` command; make the one installed beside this Python findable when the
# environment is not activated (e.g. `.venv/bin/snakemake`). An activated one keeps precedence.
envvars:
    "PATH",


if shutil.which("predictgs") is None and (Path(sys.executable).parent / "predictgs").exists():
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + str(Path(sys.executable).parent)


# ---------------------------------------------------------------------------------------------------
# Scenes


def _check_data_dir():
    """Real benchmarks read their scenes under data_dir: a data_dir that is not a folder is one message
    (not a list of missing inputs)."""
    real = [b for b, spec in config["benchmarks"].items() if "family" not in spec]
    if real and not Path(config["data_dir"]).is_dir():
        raise WorkflowError(
            f"data_dir {config['data_dir']!r} is not a folder: give the folder holding the scenes of "
            f"{', '.join(real)} with --config data_dir=PATH (make verdicts-real DATA_DIR=PATH)"
        )


def _scene_registry():
    """(benchmark, scene) -> dict(path, family, seed); family/seed only for generated scenes."""
    _check_data_dir()
    scenes = {}
    for benchmark, spec in config["benchmarks"].items():
        if "family" in spec:
            if "synth" not in config:
                raise WorkflowError(f"benchmark {benchmark} is synthetic: the config needs a synth section")
            for seed in spec["scene_seeds"]:
                name = f"{benchmark}_seed{seed}"
                scenes[(benchmark, name)] = dict(
                    path=f"{RESULTS}/scenes/{name}", family=spec["family"], seed=seed
                )
        else:
            root = Path(config["data_dir"]) / spec.get("root", "")
            names = spec["scenes"]
            folders = names.items() if isinstance(names, dict) else ((n, n) for n in names)
            for name, folder in folders:
                scenes[(benchmark, name)] = dict(path=str(root / folder), family=None, seed=None)
    return scenes


SCENES = _scene_registry()
SYNTH_SCENES = {scene: info for (_, scene), info in SCENES.items() if info["family"]}
# Real benchmarks that stand in for one of the paper's in the verdicts (stands_in_for); the synthetic
# benchmarks' stand-ins are known by name (predictgs/report/paper.py).
STAND_INS = {b: spec["stands_in_for"] for b, spec in config["benchmarks"].items() if spec.get("stands_in_for")}


def scenes_of(benchmark):
    return [scene for (b, scene) in SCENES if b == benchmark]


def scene_path(wildcards):
    key = (wildcards.benchmark, wildcards.scene)
    if key not in SCENES:
        raise WorkflowError(f"unknown scene {wildcards.scene!r} of benchmark {wildcards.benchmark!r}")
    return SCENES[key]["path"]


# ---------------------------------------------------------------------------------------------------
# Rate points and ablation variants


def lambda_tag(value):
    return f"{float(value):g}"


ALL_METHODS = {**config.get("extended_methods", {}), **config["methods"]}


def table_methods(tableset="tables"):
    """The methods of a table set: the main ones, and for tables_extended the extended ones too."""
    if tableset == "tables_extended":
        return [*config["methods"], *(m for m in config.get("extended_methods", {}) if m not in config["methods"])]
    return list(config["methods"])


def method_lambdas(method, benchmark):
    """Lambda tags of a method's main runs on a benchmark (NO_RATE for methods without lambdas)."""
    per_benchmark = config["benchmarks"][benchmark].get("lambdas", {})
    values = per_benchmark.get(method, ALL_METHODS.get(method, {}).get("lambdas"))
    return [lambda_tag(v) for v in values] if values else [NO_RATE]


def variant_name(field, value):
    """Run variant of a sweep value; the paper's default value is the main run."""
    default = PREDICTGS_DEFAULTS[field]
    if isinstance(default, str):
        same = str(value).lower() == default
    else:
        same = float(value) == float(default)
    if same:
        return "default"
    return f"{field}-{value}" if isinstance(value, str) else f"{field}-{value:g}"


def variant_overrides(variant):
    """Model keys of a run variant ("default", "schedule-linear", "residual_dim-10", "ds_init-0.5")."""
    if variant == "default":
        return {}
    field, _, text = variant.partition("-")
    if field not in SWEEP_TYPES or not text:
        raise WorkflowError(f"unknown run variant {variant!r} (default or <{'|'.join(SWEEPS)}>-<value>)")
    try:
        return setting_overrides(field, SWEEP_TYPES[field](text))
    except ValueError:
        raise WorkflowError(f"run variant {variant!r}: {text!r} is not a valid {field}") from None


# ---------------------------------------------------------------------------------------------------
# Runs


def run_file(benchmark, scene, method, variant, lmbda, seed, name="summary.json"):
    run = RUN.format(benchmark=benchmark, scene=scene, method=method, variant=variant, lmbda=lmbda,
                     train_seed=seed)
    return f"{run}/{name}"


def main_runs(benchmark=None, name="summary.json", seeds=None, tableset="tables", methods=None):
    """Files of the main runs (every method x scene x lambda x training seed, paper settings), optionally
    of one benchmark; ``seeds``: the training seeds (default ``train_seeds``); ``tableset``: the
    methods (``table_methods``), or ``methods`` named."""
    return [
        run_file(b, scene, method, "default", lmbda, seed, name)
        for (b, scene) in SCENES
        if benchmark is None or b == benchmark
        for method in (table_methods(tableset) if methods is None else methods)
        for lmbda in method_lambdas(method, b)
        for seed in (TRAIN_SEEDS if seeds is None else seeds)
    ]


def bdrate_pairs(tableset):
    """(anchors, methods) of the BD-rate table of a table set: the configured ones that it runs."""
    methods = table_methods(tableset)
    anchors = config["bdrate"]["anchor"]
    anchors = [anchors] if isinstance(anchors, str) else list(anchors)
    return ([a for a in anchors if a in methods],
            [m for m in config["bdrate"]["methods"] if m in methods])


def ablation_runs(kind, name="summary.json", seeds=None):
    """Files of the runs behind one ablation (Table 4: one row per method; sweeps: Predict-GS variants),
    once per training seed (default ``train_seeds``)."""
    spec = config["ablations"].get(kind)
    if not spec:
        return []
    if kind == "components":
        combos = [(method, "default") for method in spec["methods"]]
    else:
        combos = [("predictgs", variant_name(kind, value)) for value in spec["values"]]
    files = [
        run_file(benchmark, scene, method, variant, lambda_tag(lmbda), seed, name)
        for benchmark in spec["benchmarks"]
        for scene in scenes_of(benchmark)
        for lmbda in spec["lambdas"]
        for method, variant in combos
        for seed in (TRAIN_SEEDS if seeds is None else seeds)
    ]
    return list(dict.fromkeys(files))


def verdict_runs(name="summary.json"):
    """The runs behind the target `verdicts`: every main run, the main runs of ``verdicts.methods`` (from
    extended_methods) and every configured ablation run, once per training seed of ``verdicts.train_seeds``."""
    files = main_runs(name=name, seeds=VERDICT_SEEDS)
    files += main_runs(name=name, seeds=VERDICT_SEEDS, methods=config["verdicts"].get("methods", []))
    for kind in configured_ablations():
        files += ablation_runs(kind, name=name, seeds=VERDICT_SEEDS)
    return list(dict.fromkeys(files))


def configured_ablations():
    return [kind for kind in ABLATIONS if config["ablations"].get(kind)]


def uses_codec(method):
    return ALL_METHODS.get(method, {}).get("codec", True)


def summary_inputs(wildcards):
    run = RUN.format(**dict(wildcards.items()))
    inputs = {"metrics": f"{run}/metrics.json"}
    if uses_codec(wildcards.method):
        # decoded/ (its metrics.json, what `predictgs eval` wrote) is read and compared with the copy
        inputs.update(bitstream=f"{run}/scene.pgs", decoded=f"{run}/decoded_metrics.json", decoded_dir=f"{run}/decoded")
    return inputs


# ---------------------------------------------------------------------------------------------------
# The training configuration of a run: defaults < train_config < benchmark's train_config < variant


def deep_merge(base, update):
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def method_entry(by_method, method):
    """A method's entry of model_by_method, else its base method's (predictgs_sfp_only -> predictgs)."""
    if method in by_method:
        return by_method[method]
    bases = [name for name in by_method if method.startswith(name + "_")]
    return by_method[max(bases, key=len)] if bases else {}


def _field_tree(cls):
    """A config dataclass's keys: name -> the nested dataclass's tree (densify, context, ...) or None."""
    import dataclasses

    tree = {}
    for field in dataclasses.fields(cls):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        tree[field.name] = _field_tree(type(default)) if dataclasses.is_dataclass(default) else None
    return tree


def _union_tree(trees):
    union = {}
    for tree in trees:
        for key, sub in tree.items():
            union[key] = _union_tree([union.get(key) or {}, sub]) if sub is not None else union.get(key)
    return union


def _model_fields():
    """The model-config keys of each method (nested), and of every method together."""
    from predictgs.methods import registry

    per_method = {name: _field_tree(cls.config_class) for name, cls in registry().items()}
    return per_method, _union_tree(per_method.values())


MODEL_FIELDS, ANY_MODEL_FIELD = _model_fields()


def _keys_for(section, own, known, where):
    """``section`` with the keys of ``own`` (one method's tree) only; a key in no tree (``known``) is an
    error."""
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise WorkflowError(f"{where}: no method has the key(s) {', '.join(unknown)}")
    kept = {}
    for key, value in section.items():
        if key not in own:
            continue
        if isinstance(value, dict) and own[key] is not None:
            value = _keys_for(value, own[key], known[key] or {}, f"{where}.{key}")
            if not value:
                continue
        kept[key] = value
    return kept


def shared_model(model, method, where):
    """A layer's `model:` section for one method: the keys (at every level) its configuration has. A key
    that only other methods have (voxel_size or densify.grad_threshold for 3DGS, which has no voxels or
    anchors) is left out; a key no method has is an error."""
    return _keys_for(model, MODEL_FIELDS.get(method, ANY_MODEL_FIELD), ANY_MODEL_FIELD, f"{where}.model")


def benchmark_preset(benchmark):
    """The benchmark's preset (predictgs.presets): its `preset:`, else the preset named like it, else None."""
    from predictgs.presets import PRESETS

    name = config["benchmarks"][benchmark].get("preset", benchmark)
    return PRESETS.get(name)


def train_config(benchmark, method, variant):
    """The YAML written for `predictgs train --config` (sections benchmark, train, protocol, model):
    the benchmark's preset < train_config < the benchmark's train_config < the variant. The training
    seed is not in it: each run gets `--seed` from its folder (train_seed<N>), so the seeds of one
    configuration share this file."""
    preset = benchmark_preset(benchmark)
    preset_part = preset.train_config(method) if preset else {}
    fragment = {
        "benchmark": benchmark,
        "train": {"iterations": config["iterations"], "device": config["device"]},
        "protocol": preset_part.get("protocol", {}),
        "model": preset_part.get("model", {}),
    }
    layers = (("train_config", config.get("train_config", {})),
              (f"benchmarks.{benchmark}.train_config", config["benchmarks"][benchmark].get("train_config", {})))
    for where, layer in layers:
        for section in ("train", "protocol"):
            fragment[section] = deep_merge(fragment[section], layer.get(section, {}))
        fragment["model"] = deep_merge(fragment["model"], shared_model(layer.get("model", {}), method, where))
        fragment["model"] = deep_merge(fragment["model"], method_entry(layer.get("model_by_method", {}), method))
    fragment["model"] = deep_merge(fragment["model"], variant_overrides(variant))
    fragment = {key: value for key, value in fragment.items() if value != {}}
    from predictgs.presets import PRESETS

    if benchmark in PRESETS and preset is not None and preset.name != benchmark:
        # `predictgs train` would take the preset named like the benchmark: name the right one
        fragment["preset"] = preset.name
    return fragment


PROTOCOL_FLAGS = {
    "resolution": "--resolution",
    "max_width": "--max-width",
    "images_folder": "--images-folder",
    "downscale": "--downscale",
    "llffhold": "--llffhold",
}


def protocol_flags(benchmark):
    """The benchmark's evaluation protocol as `predictgs scene-info` options."""
    protocol = train_config(benchmark, "scaffold", "default").get("protocol", {})
    flags = [f"{flag} {protocol[key]}" for key, flag in PROTOCOL_FLAGS.items() if protocol.get(key) is not None]
    if protocol.get("white_background") is not None:
        flags.append("--white-background" if protocol["white_background"] else "--no-white-background")
    return " ".join(flags)


# ---------------------------------------------------------------------------------------------------
# Checks the schema cannot express


def _check_config():
    from predictgs.methods import registry

    known = registry()
    anchors = config["bdrate"]["anchor"]
    named = [*ALL_METHODS, *([anchors] if isinstance(anchors, str) else anchors), *config["bdrate"]["methods"],
             *config["ablations"].get("components", {}).get("methods", [])]
    unknown = sorted(set(named) - set(known))
    if unknown:
        raise WorkflowError(f"unknown method(s) {', '.join(unknown)} in the configuration; predictgs has "
                            f"{', '.join(sorted(known))}")
    missing = sorted(set(config["verdicts"].get("methods", [])) - set(ALL_METHODS))
    if missing:
        raise WorkflowError(f"verdicts.methods: {', '.join(missing)} not in methods or extended_methods")
    for method, spec in ALL_METHODS.items():
        if known[method].default_lmbda is None and spec.get("lambdas"):
            raise WorkflowError(f"methods.{method}.lambdas: {method} has no entropy model (no lambdas)")
    benchmarks = set(config["benchmarks"])
    for kind in configured_ablations():
        unknown = sorted(set(config["ablations"][kind]["benchmarks"]) - benchmarks)
        if unknown:
            raise WorkflowError(f"ablations.{kind}.benchmarks: unknown benchmark(s) {', '.join(unknown)}")
    for benchmark, spec in config["benchmarks"].items():
        unknown = sorted(set(spec.get("lambdas", {})) - set(ALL_METHODS))
        if unknown:
            raise WorkflowError(f"benchmarks.{benchmark}.lambdas: method(s) {', '.join(unknown)} not in methods")
        if "scaffold" in spec.get("lambdas", {}):
            raise WorkflowError(f"benchmarks.{benchmark}.lambdas: scaffold has no entropy model (no lambdas)")
    from predictgs.report.paper import PAPER_BENCHMARKS

    own = sorted(set(STAND_INS) & set(PAPER_BENCHMARKS))
    if own:
        raise WorkflowError(f"benchmarks.{own[0]}.stands_in_for: {own[0]} is the paper's own "
                            f"{PAPER_BENCHMARKS[own[0]]} benchmark; only other benchmarks stand in for one")
    if "scaffold" in config["ablations"].get("components", {}).get("methods", []):
        raise WorkflowError("ablations.components.methods: scaffold has no entropy model (no lambdas)")


_check_config()
