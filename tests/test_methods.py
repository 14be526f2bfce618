"""Methods as plugins: the registry, the documented minimal example of a new method, and the import
graph (imports point only down the layers of docs/../architecture: the codec never imports the trainer,
the model never imports the trainer, nothing imports the command line)."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from predictgs.errors import ConfigError
from predictgs.methods import method_class, register_method, registry

ROOT = Path(__file__).resolve().parents[1]

# Low to high; a module may import its own layer or lower ones only.
LAYERS = [
    ("predictgs.errors", "predictgs.config", "predictgs.io", "predictgs.metric_keys", "predictgs.parse",
     "predictgs.kernels", "predictgs.progress"),
    ("predictgs.nn", "predictgs.data", "predictgs.metrics", "predictgs.render", "predictgs.model"),
    ("predictgs.codec", "predictgs.entropy", "predictgs.evaluate", "predictgs.guard"),
    ("predictgs.train", "predictgs.runs", "predictgs.report"),
    ("predictgs.methods", "baselines", "predictgs.presets"),
    ("predictgs.pipeline", "predictgs.export", "predictgs.render_video"),
    ("predictgs.cli", "predictgs.__main__"),
]


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module imported anywhere in the file (function bodies included), with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def project_files() -> list[Path]:
    return sorted(p for package in ("predictgs", "baselines") for p in (ROOT / package).rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in project_files() if layer_of(module_name(p)) is None
               and module_name(p) != "predictgs"]
    assert missing == []


def test_imports_point_only_down_the_layers():
    upward = []
    for path in project_files():
        source = module_name(path)
        level = layer_of(source)
        if level is None:
            continue
        for target, line in imports_of(path):
            target_level = layer_of(target)
            if target_level is not None and target_level > level:
                upward.append(f"{path.relative_to(ROOT)}:{line} {source} -> {target}")
    assert upward == []


def test_the_import_check_sees_an_upward_import(tmp_path):
    fake = ROOT / "predictgs" / "codec" / "_fake_upward.py"
    fake.write_text("def f():\n    from ..train import trainer\n")
    try:
        found = [t for t, _ in imports_of(fake)]
        assert "predictgs.train.trainer" in found and layer_of("predictgs.train.trainer") > layer_of(
            "predictgs.codec._fake_upward")
    finally:
        fake.unlink()


# -- the registry ------------------------------------------------------------------------------------
def test_registry_lists_the_methods_and_their_defaults():
    methods = registry()
    assert {"scaffold", "hac", "predictgs", "predictgs_sfp_only", "predictgs_no_pt"} <= set(methods)
    assert method_class("hac").default_lmbda == 0.001 and method_class("predictgs").default_lmbda == 0.004
    assert method_class("scaffold").default_lmbda is None
    with pytest.raises(ConfigError, match="unknown method 'nerf'"):
        method_class("nerf")


def test_two_methods_cannot_share_a_name():
    class Clash(method_class("hac")):
        name = "hac"

    with pytest.raises(TypeError, match="two methods are registered as 'hac'"):
        register_method(Clash)


def test_the_cli_shows_each_methods_default_lambda(capsys):
    from predictgs.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "hac 0.001" in text and "predictgs 0.004" in text


# -- the documented example ----------------------------------------------------------------------------
def documented_example() -> str:
    text = (ROOT / "docs" / "methods.md").read_text()
    return re.search(r"```python\n(# baselines/scaffold_k5\.py\n.*?)```", text, re.S).group(1)


@pytest.mark.slow
def test_the_documented_minimal_method_trains_encodes_and_decodes(tmp_path):
    from predictgs.data.synth import generate_scene
    from predictgs.pipeline.codec import check_round_trip, decode_model, encode_model
    from predictgs.pipeline.train import load_run, run_training

    module = types.ModuleType("baselines.scaffold_k5")
    sys.modules[module.__name__] = module
    try:
        exec(compile(documented_example(), "docs/methods.md", "exec"), module.__dict__)
        cls = method_class("scaffold_k5")
        assert cls.label == "Scaffold-GS (K=5)" and cls.config_class().n_offsets == 5
        scene = tmp_path / "scene"
        generate_scene("object", 0, scene, width=40, height=30, num_views=8, num_points=200)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"train": {"lpips": False}}))
        metrics = run_training("scaffold_k5", scene, tmp_path / "run", iterations=10, config_file=config,
                               progress=False)
        assert metrics["method"] == "scaffold_k5" and metrics["method_label"] == "Scaffold-GS (K=5)"
        _, model = load_run(tmp_path / "run")
        decoded = decode_model(encode_model(model).data)
        assert decoded.method == "scaffold_k5" and type(decoded.model) is cls
        check_round_trip(model, decoded.model)
        assert decoded.model.anchors.offsets.shape[1] == 5
    finally:
        from predictgs.methods.registry import _REGISTRY

        _REGISTRY.pop("scaffold_k5", None)
        sys.modules.pop(module.__name__, None)
