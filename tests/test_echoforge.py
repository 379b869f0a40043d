"""echoforge registry + echojax.export: manifests, sha256 checks, versions, errors, the CLI on a run's checkpoint,
and loading in a process where JAX cannot be imported and pickle is forbidden."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import echoforge
from echoforge.registry import sha256_file
from echojax.convert import random_variables
from echojax.errors import UserError
from echojax.export import export_variables, to_module
from echojax.models import get_model
from tests.helpers.files import BLOCK_JAX_IMPORTS

REPO = Path(__file__).resolve().parent.parent
ARCH, KW = "resnet18", {"width": 8, "num_classes": 3}


def _variables(arch=ARCH, kw=KW, shape=(1, 32, 32, 3), seed=0):
  model = get_model(arch, **kw)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return random_variables(abstract, seed)


def _x(n=2) -> torch.Tensor:
  return torch.from_numpy(np.random.default_rng(5).random((n, 3, 32, 32), dtype=np.float32))


@pytest.fixture
def reg(tmp_path, monkeypatch) -> Path:
  monkeypatch.delenv("ECHOFORGE_HOME", raising=False)
  return tmp_path / "registry"


def test_export_then_load(reg):
  v = _variables()
  spec = {"layout": "NCHW", "shape": [3, 32, 32], "channels": 3, "value_range": [0, 255],
          "normalisation": {"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}}
  out = export_variables(v, "TinyNet", ARCH, KW, registry=reg, class_names=["a", "b", "c"], input=spec,
                         metrics={"test": {"accuracy": 0.5}}, source={"git_commit": "abc"})
  assert out == reg / "TinyNet" / "v1"
  m = json.loads((out / "manifest.json").read_text())
  assert m["name"] == "TinyNet" and m["version"] == "v1"
  assert m["architecture"]["name"] == ARCH and m["architecture"]["kwargs"] == KW
  assert m["input"] == spec and m["class_names"] == ["a", "b", "c"]
  assert m["weights"]["sha256"] == sha256_file(out / "model.safetensors")
  assert m["parity"]["checked"] and m["parity"]["max_abs_diff"] <= 1e-4
  assert m["metrics"] == {"test": {"accuracy": 0.5}} and m["source"]["git_commit"] == "abc"

  listed = echoforge.list_models(reg)
  assert [(e["name"], e["version"], e["architecture"]) for e in listed] == [("TinyNet", "v1", ARCH)]
  assert listed[0]["metrics"] == {"test": {"accuracy": 0.5}}

  model = echoforge.load_model("TinyNet", registry=reg)
  assert isinstance(model, torch.nn.Module) and not model.training
  ref = to_module(v, ARCH, KW)
  with torch.no_grad():
    np.testing.assert_array_equal(model(_x()).numpy(), ref(_x()).numpy())
  assert model.echoforge_manifest["class_names"] == ["a", "b", "c"]


def test_versions_env_root_and_untrained(reg, monkeypatch):
  export_variables(_variables(seed=0), "Tiny", ARCH, KW, registry=reg, check_parity=False)
  export_variables(_variables(seed=1), "Tiny", ARCH, KW, registry=reg, check_parity=False)
  assert [e["version"] for e in echoforge.list_models(reg)] == ["v1", "v2"]
  monkeypatch.setenv("ECHOFORGE_HOME", str(reg))  # registry root from the environment
  latest, first = echoforge.load_model("Tiny"), echoforge.load_model("Tiny", version="v1")
  with torch.no_grad():
    np.testing.assert_array_equal(latest(_x()).numpy(), to_module(_variables(seed=1), ARCH, KW)(_x()).numpy())
    np.testing.assert_array_equal(first(_x()).numpy(), to_module(_variables(seed=0), ARCH, KW)(_x()).numpy())
  with pytest.raises(echoforge.ModelNotFoundError, match="v1, v2"):
    echoforge.load_model("Tiny", version="v9")
  # pretrained=False: the exported architecture (width 8, 3 classes) freshly initialised.
  fresh = echoforge.load_model("Tiny", pretrained=False)
  assert not fresh.training and fresh.head.out_features == 3 and fresh.stem_conv.out_channels == 8
  assert not torch.equal(fresh.stem_conv.weight, latest.stem_conv.weight)
  # ... and an architecture that was never exported: its defaults (torchvision resnet50, 1000 classes).
  r50 = echoforge.load_model("ResNet50", pretrained=False)
  assert sum(p.numel() for p in r50.parameters()) == 25_557_032
  monkeypatch.delenv("ECHOFORGE_HOME")
  monkeypatch.setenv("HOME", str(reg.parent / "home"))
  assert echoforge.registry_root() == reg.parent / "home" / ".cache" / "echoforge"


def test_unknown_or_unexported_names_say_how_to_export(reg):
  export_variables(_variables(), "Tiny", ARCH, KW, registry=reg, check_parity=False)
  with pytest.raises(echoforge.ModelNotFoundError) as e:
    echoforge.load_model("NoSuchNet", registry=reg)
  assert "python -m echojax.export --workdir DIR --name NoSuchNet" in str(e.value) and "Tiny" in str(e.value)
  with pytest.raises(echoforge.ModelNotFoundError) as e:
    echoforge.load_model("EchoSDNet", registry=reg)  # a known architecture, but not exported yet
  assert "python -m echojax.export --workdir DIR --name EchoSDNet" in str(e.value)
  assert "pretrained=False" in str(e.value)
  with pytest.raises(echoforge.ModelNotFoundError, match="echojax.export"):
    echoforge.load_model("NoSuchNet", pretrained=False, registry=reg)
  with pytest.raises(echoforge.EchoforgeError, match="invalid model name"):
    echoforge.load_model("../etc", registry=reg)


def test_sha256_mismatch_and_bad_manifest_are_refused(reg):
  out = export_variables(_variables(), "Tiny", ARCH, KW, registry=reg, check_parity=False)
  w = out / "model.safetensors"
  data = bytearray(w.read_bytes())
  data[-5] ^= 0xFF  # flip bits inside the last tensor's bytes
  w.write_bytes(bytes(data))
  with pytest.raises(echoforge.IntegrityError, match="sha256"):
    echoforge.load_model("Tiny", registry=reg)
  assert echoforge.load_model("Tiny", pretrained=False, registry=reg) is not None  # no weights read
  (out / "manifest.json").write_text("{not json")
  with pytest.raises(echoforge.IntegrityError, match="manifest"):
    echoforge.load_model("Tiny", registry=reg)


def test_export_refuses_broken_conversion(reg, monkeypatch):
  """The export-time parity check catches a torch mirror that disagrees with the JAX model."""
  import echojax.export as ex

  real = ex._jax_apply
  monkeypatch.setattr(ex, "_jax_apply", lambda *a: real(*a) + 1e-2)
  with pytest.raises(UserError, match="refused"):
    export_variables(_variables(), "Tiny", ARCH, KW, registry=reg)
  assert echoforge.list_models(reg) == []
  with pytest.raises(UserError, match="--name"):
    export_variables(_variables(), "bad/name", ARCH, KW, registry=reg, check_parity=False)


def test_export_of_non_finite_weights_blames_the_checkpoint_not_the_conversion(reg):
  """A diverged run's NaN weights make both outputs NaN: the refusal says the checkpoint is broken (naming a
  tensor), not that the conversion is, and nothing is written."""
  v = _variables()
  v["params"]["head"]["bias"] = np.full_like(np.asarray(v["params"]["head"]["bias"]), np.nan)
  with pytest.raises(UserError, match=r"hold NaN or inf \(first: params/head/bias\).*not the conversion"):
    export_variables(v, "Tiny", ARCH, KW, registry=reg)
  assert echoforge.list_models(reg) == []


# Entries exported before manifest format 2 hold ResNet tensors under torchvision's names (the mirrors' names then);
# a few of those names, written out, per architecture: 2D ResNet, R(2+1)D, a ResNet frame backbone (backbone.net).
LEGACY = [("resnet18", KW, (1, 32, 32, 3), ["conv1.weight", "bn1.running_var", "layer2.0.downsample.1.weight",
                                           "layer4.1.bn2.num_batches_tracked", "fc.weight"]),
          ("r2plus1d_18", {"width": 4, "num_classes": 2}, (1, 4, 16, 16, 3),
           ["stem.0.weight", "stem.3.weight", "stem.4.running_mean", "layer1.1.conv2.0.3.weight",
            "layer3.0.conv1.0.1.running_var", "layer3.0.conv1.1.bias", "fc.bias"]),
          ("mhsa", {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "width": 16, "max_len": 8, "num_heads": 2,
                    "mlp_dim": 32, "depth": 1, "num_classes": 2}, (1, 3, 16, 16, 3),
           ["backbone.net.conv1.weight", "backbone.net.layer4.1.bn2.weight", "head.weight",
            "temporal.encoder.layer_0.attention.query.weight"])]


@pytest.mark.parametrize("arch,kw,shape,old_keys", LEGACY, ids=[a[0] for a in LEGACY])
def test_entries_exported_before_format_2_still_load(reg, arch, kw, shape, old_keys):
  """An entry written the old way (torchvision-named ResNet keys, manifest format 1) loads; the same weights under a
  format-2 manifest do not (the format, not a guess, decides)."""
  from safetensors.torch import save_file

  from echoforge import torchvision_names

  ref = to_module(_variables(arch, kw, shape, seed=3), arch, kw)
  sd = ref.state_dict()
  old_names = torchvision_names.to_torchvision({k: tuple(v.shape) for k, v in sd.items()})
  old = {old_names[k]: v.contiguous() for k, v in sd.items()}
  assert set(old_keys) <= set(old), sorted(set(old_keys) - set(old))
  entry = reg / "Old" / "v1"
  entry.mkdir(parents=True)
  save_file(old, str(entry / "model.safetensors"), metadata={"format": "pt", "name": "Old", "version": "v1"})
  manifest = {"format": "echoforge-manifest/1", "name": "Old", "version": "v1",
              "architecture": {"name": arch, "kwargs": kw, "torch_kwargs": {}},
              "weights": {"file": "model.safetensors", "sha256": sha256_file(entry / "model.safetensors")}}
  (entry / "manifest.json").write_text(json.dumps(manifest))
  model = echoforge.load_model("Old", registry=reg)
  x = torch.from_numpy(np.random.default_rng(5).random((2, shape[-1], *shape[1:-1]), dtype=np.float32))
  with torch.no_grad():
    np.testing.assert_array_equal(model(x).numpy(), ref.eval()(x).numpy())

  (entry / "manifest.json").write_text(json.dumps({**manifest, "format": echoforge.registry.FORMAT}))
  with pytest.raises(echoforge.IntegrityError, match="do not fit"):
    echoforge.load_model("Old", registry=reg)
  # the sha256 is still checked first
  data = bytearray((entry / "model.safetensors").read_bytes())
  data[-5] ^= 0xFF
  (entry / "model.safetensors").write_bytes(bytes(data))
  (entry / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(echoforge.IntegrityError, match="sha256"):
    echoforge.load_model("Old", registry=reg)


def test_new_entries_are_format_2_with_echoforge_names(reg):
  out = export_variables(_variables(), "Tiny", ARCH, KW, registry=reg, check_parity=False)
  assert json.loads((out / "manifest.json").read_text())["format"] == "echoforge-manifest/2"
  from safetensors import safe_open

  with safe_open(str(out / "model.safetensors"), "pt") as f:
    keys = set(f.keys())
  assert {"stem_conv.weight", "stage2_block0.downsample_bn.running_var", "head.weight"} <= keys
  assert not any(k.startswith(("conv1.", "layer", "fc.")) for k in keys)


def test_echoforge_sources_have_no_jax_torchvision_or_pickle():
  import re

  banned_import = re.compile(r"^\s*(import|from)\s+(jax|jaxlib|flax|torchvision|echojax|pickle|orbax)\b", re.M)
  files = list((REPO / "echoforge").rglob("*.py"))
  assert len(files) >= 6
  for path in files:
    text = path.read_text()
    assert not banned_import.search(text), f"{path}: {banned_import.search(text).group(0)}"
    for call in ("torch.load(", "pickle.", "torch.hub"):
      assert call not in text, f"{path}: {call}"


def _write_run(workdir: Path) -> None:
  """A training run folder as echojax.train writes it: config.json, an orbax checkpoint, metrics, eval results."""
  import optax

  from echojax import config as config_lib
  from echojax.checkpoint import Checkpointer
  from tests.helpers.trainer import get_config

  c = get_config("task=classification")
  c.model.name = "r3d_18"
  c.model.kwargs = {"width": 4}
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(config_lib.to_json(c))
  model = get_model("r3d_18", width=4, num_classes=2)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 4, 8, 8, 3)), train=False))
  v = jax.tree_util.tree_map(jnp.asarray, random_variables(abstract, 11))
  state = {"step": jnp.asarray(6, jnp.int32), "params": v["params"], "batch_stats": v["batch_stats"],
           "opt_state": optax.sgd(0.1, momentum=0.9).init(v["params"])}
  ck = Checkpointer(workdir, async_=False)
  ck.save(6, state, {"step": 6, "config": json.loads(config_lib.to_json(c))})
  ck.wait()
  ck.close()
  (workdir / "metrics.jsonl").write_text(json.dumps({"split": "val", "step": 6, "accuracy": 0.75}) + "\n")
  (workdir / "eval" / "test_best").mkdir(parents=True)
  (workdir / "eval" / "test_best" / "metrics.json").write_text(json.dumps({"metrics": {"auroc": 0.9}}))
  np.save(workdir / "expected_input.npy", np.random.default_rng(2).random((2, 3, 4, 8, 8), dtype=np.float32))
  out, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, np.moveaxis(np.load(workdir / "expected_input.npy"), 1, -1))
  np.save(workdir / "expected_output.npy", np.asarray(out))


@pytest.mark.slow
def test_cli_exports_a_run_and_echoforge_loads_it_without_jax_or_pickle(tmp_path, capsys):
  from echojax.export import main

  wd, reg = tmp_path / "run", tmp_path / "reg"
  _write_run(wd)
  main(["--workdir", str(wd), "--name", "TinyVideo", "--registry", str(reg)])
  printed = capsys.readouterr().out
  assert "exported TinyVideo v1" in printed
  m = json.loads((reg / "TinyVideo" / "v1" / "manifest.json").read_text())
  assert f"version='v1', sha256={m['weights']['sha256']!r})" in printed  # the pin, ready to copy
  assert m["architecture"] == {"name": "r3d_18", "kwargs": {"width": 4, "num_classes": 2}, "torch_kwargs": {},
                               "framework": "torch",
                               "module": "echoforge.models.video_resnet.VideoResNet"}
  assert m["class_names"] == ["low", "normal"]
  assert m["input"]["layout"] == "NCTHW" and m["input"]["shape"] == [3, 4, 8, 8]
  assert m["source"]["step"] == 6 and m["source"]["checkpoint"] == "latest"
  assert m["source"]["config"]["model"]["name"] == "r3d_18" and len(m["source"]["git_commit"] or "x" * 40) == 40
  assert m["metrics"]["test_best"] == {"auroc": 0.9} and m["metrics"]["val_last"]["accuracy"] == 0.75
  assert m["parity"]["max_abs_diff"] <= 1e-4

  # A fresh interpreter where importing jax/flax/echojax/torchvision fails and unpickling raises.
  script = BLOCK_JAX_IMPORTS + textwrap.dedent(f"""
    import pickle, numpy as np, torch
    def no_pickle(*a, **k):
      raise AssertionError("pickle used")
    pickle.load = pickle.loads = torch.load = no_pickle
    import echoforge
    print([m["name"] for m in echoforge.list_models({str(reg)!r})])
    model = echoforge.load_model("TinyVideo", registry={str(reg)!r})
    x = torch.from_numpy(np.load({str(wd / 'expected_input.npy')!r}))
    with torch.no_grad():
      y = model(x).numpy()
    diff = float(np.abs(y - np.load({str(wd / 'expected_output.npy')!r})).max())
    assert diff <= 1e-4, diff
    bad = [m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "echojax", "torchvision")]
    assert not bad, bad
    print("OK", diff)
  """)
  try:
    import jax  # noqa: F401  (proves the blocker, not a missing install, is what stops it in the child)
  except ImportError:
    pytest.fail("jax should be importable here")
  env = {k: v for k, v in os.environ.items() if k != "ECHOFORGE_HOME"}
  env["PYTHONPATH"] = str(REPO)
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "['TinyVideo']" in r.stdout and "OK" in r.stdout


def test_cli_errors_are_clean(tmp_path):
  r = subprocess.run([sys.executable, "-m", "echojax.export", "--workdir", str(tmp_path / "nope"), "--name", "X"],
                     capture_output=True, text=True, cwd=REPO, timeout=300)
  assert r.returncode == 2 and "config.json not found" in r.stderr and "Traceback" not in r.stderr


def test_every_table_entry_builds_on_both_sides():
  """The architecture table is the one list of names: every entry is a JAX model and a torch mirror, and every
  library model of the JAX registry is an entry (test-only models, e.g. tests.helpers.trainer's tiny_video_net,
  are not part of the library)."""
  import inspect

  from echoforge import archs
  from echoforge.models import torch_class
  from echojax.models import get_model, registry

  library = {n for n, fn in registry._MODELS.items() if fn.__module__.startswith("echojax.")}
  assert library == set(archs.ARCHS)
  assert set(echoforge.architectures()) == set(archs.ARCHS)
  for name, entry in archs.ARCHS.items():
    assert entry.family in archs.FAMILIES
    get_model(name)  # JAX constructor resolves and takes the fixed arguments
    cls = torch_class(name)
    assert set(entry.fixed) <= set(inspect.signature(cls.__init__).parameters), name
    assert set(entry.torch_input_kwargs) <= set(inspect.signature(cls.__init__).parameters), name


def test_architecture_table_imports_neither_torch_nor_jax():
  code = ("import sys, echoforge.archs, echoforge.torchvision_names; assert not"
          " {'torch', 'jax', 'flax'} & set(sys.modules), sorted(sys.modules)")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
