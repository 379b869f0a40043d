"""The echoforge registry must not load what it did not export (issue 10): a caller can pin the weights' sha256,
symbolic links are refused, and corrupt entries are IntegrityErrors naming the entry (and do not break
``list_models`` for the rest of the registry). Entries are written with echoforge alone (no JAX): a torch module of
the architecture and :func:`echoforge.registry.write_entry`, as the export writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest
import torch

import echoforge
from echoforge.models import build
from echoforge.registry import sha256_file, write_entry
from tests.helpers.files import BLOCK_JAX_IMPORTS

REPO = Path(__file__).resolve().parent.parent
ARCH, KW = "resnet18", {"width": 4, "num_classes": 3}


@pytest.fixture
def reg(tmp_path, monkeypatch) -> Path:
  monkeypatch.delenv("ECHOFORGE_HOME", raising=False)
  return tmp_path / "registry"


def _entry(reg: Path, name: str, seed: int = 0) -> Path:
  torch.manual_seed(seed)
  module = build(ARCH, **KW)
  manifest = {"architecture": {"name": ARCH, "kwargs": KW, "torch_kwargs": {}}, "weights": {"format": "safetensors"}}
  return write_entry(name, module.state_dict(), manifest, reg)


def _manifest(entry: Path) -> dict:
  return json.loads((entry / "manifest.json").read_text())


def _edit(entry: Path, **fields) -> None:
  (entry / "manifest.json").write_text(json.dumps({**_manifest(entry), **fields}))


def _x() -> torch.Tensor:
  return torch.linspace(0, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)


# ------------------------------------------------------------------------------------------------ 1. pinned sha256
def test_pinned_sha256_refuses_swapped_weights_with_an_edited_manifest(reg):
  a, b = _entry(reg, "Alpha", seed=0), _entry(reg, "Beta", seed=1)
  trusted = _manifest(a)["weights"]["sha256"]
  listed = {e["name"]: e for e in echoforge.list_models(reg)}
  assert listed["Alpha"]["sha256"] == trusted == sha256_file(a / "model.safetensors")  # where users copy it from
  assert listed["Beta"]["sha256"] == sha256_file(b / "model.safetensors")
  good = echoforge.load_model("Alpha", registry=reg, sha256=trusted)
  assert good.echoforge_manifest["name"] == "Alpha"
  assert echoforge.load_model("Alpha", registry=reg, version="v1", sha256=trusted.upper()) is not None

  # Beta's weights under Alpha's name, the manifest's hash edited to match: the manifest alone cannot tell.
  (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
  swapped = _manifest(b)["weights"]["sha256"]
  _edit(a, weights={**_manifest(a)["weights"], "sha256": swapped})
  echoforge.load_model("Alpha", registry=reg)  # unsigned manifest: loads (that is why callers pin)
  with pytest.raises(echoforge.IntegrityError) as e:
    echoforge.load_model("Alpha", registry=reg, sha256=trusted)
  assert trusted in str(e.value) and swapped in str(e.value) and str(a / "model.safetensors") in str(e.value)


def test_pin_must_be_a_sha256_of_weights_that_are_read(reg):
  _entry(reg, "Alpha")
  with pytest.raises(ValueError, match="64 hex"):
    echoforge.load_model("Alpha", registry=reg, sha256="abc")
  with pytest.raises(ValueError, match="pretrained=False"):
    echoforge.load_model("Alpha", registry=reg, pretrained=False, sha256="0" * 64)


def test_readme_documents_the_pin():
  text = (REPO / "README.md").read_text()
  export = text[text.index("### Export to PyTorch"):]
  export = export[:export.index("\n### ", 1)]
  assert "sha256=" in export and "list_models" in export


# ---------------------------------------------------------------------------------------------------- 2. symlinks
def _outside_copy(entry: Path, tmp_path: Path) -> Path:
  out = tmp_path / "elsewhere" / entry.name
  out.mkdir(parents=True)
  for f in ("model.safetensors", "manifest.json"):
    (out / f).write_bytes((entry / f).read_bytes())
  return out


def test_weights_symlinked_out_of_the_registry_are_refused(reg, tmp_path):
  a = _entry(reg, "Alpha")
  outside = _outside_copy(a, tmp_path)
  (a / "model.safetensors").unlink()
  (a / "model.safetensors").symlink_to(outside / "model.safetensors")  # same bytes, same hash
  with pytest.raises(echoforge.IntegrityError, match="symbolic link") as e:
    echoforge.load_model("Alpha", registry=reg)
  assert str(a / "model.safetensors") in str(e.value)


def test_version_and_model_folders_symlinked_out_are_refused_and_listed_as_broken(reg, tmp_path):
  _entry(reg, "Good")
  a = _entry(reg, "Alpha")
  outside = _outside_copy(a, tmp_path)
  for f in a.iterdir():
    f.unlink()
  a.rmdir()
  a.symlink_to(outside, target_is_directory=True)
  with pytest.raises(echoforge.IntegrityError, match="symbolic link") as e:
    echoforge.load_model("Alpha", registry=reg)
  assert str(a) in str(e.value)
  with pytest.warns(echoforge.BrokenEntryWarning, match="Alpha"):
    assert [m["name"] for m in echoforge.list_models(reg)] == ["Good"]

  # the model folder itself a link (to another registry's folder)
  other = _entry(tmp_path / "other", "Beta").parent
  (reg / "Beta").symlink_to(other, target_is_directory=True)
  with pytest.raises(echoforge.IntegrityError, match="symbolic link") as e:
    echoforge.load_model("Beta", registry=reg)
  assert str(reg / "Beta") in str(e.value)


def test_links_inside_the_registry_are_refused_too(reg):
  a, b = _entry(reg, "Alpha", seed=0), _entry(reg, "Alpha", seed=1)
  (b / "manifest.json").unlink()
  (b / "manifest.json").symlink_to(a / "manifest.json")
  with pytest.raises(echoforge.IntegrityError, match="symbolic link"):
    echoforge.load_model("Alpha", registry=reg, version="v2")
  assert echoforge.load_model("Alpha", registry=reg, version="v1") is not None


def test_the_registry_root_itself_may_be_a_link(reg, tmp_path):
  a = _entry(reg, "Alpha")
  (tmp_path / "home").symlink_to(reg, target_is_directory=True)  # e.g. ~/.cache on another disk
  model = echoforge.load_model("Alpha", registry=tmp_path / "home", sha256=_manifest(a)["weights"]["sha256"])
  assert model.echoforge_manifest["name"] == "Alpha"
  assert [m["name"] for m in echoforge.list_models(tmp_path / "home")] == ["Alpha"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_weights_that_are_not_a_regular_file_are_refused(reg):
  a = _entry(reg, "Alpha")
  (a / "model.safetensors").unlink()
  fifo = a / "model.safetensors"
  os.mkfifo(fifo)  # reading it would block until a writer comes
  result = []

  def load():
    try:
      echoforge.load_model("Alpha", registry=reg)
      result.append(None)
    except Exception as e:  # noqa: BLE001
      result.append(e)

  t = threading.Thread(target=load, daemon=True)
  t.start()
  t.join(30)
  if t.is_alive():  # release the blocked reader, then fail
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    t.join(10)
    pytest.fail(f"load_model blocked reading the FIFO {fifo}")
  assert isinstance(result[0], echoforge.IntegrityError) and "regular file" in str(result[0]), result


# ------------------------------------------------------------------------------------------- 3. corrupt entries
BAD_MANIFESTS = {
  "string": '"a string"',
  "number": "42",
  "list": "[1, 2]",
  "null": "null",
  "no_weights": lambda m: {k: v for k, v in m.items() if k != "weights"},
  "no_architecture": lambda m: {k: v for k, v in m.items() if k != "architecture"},
  "architecture_string": lambda m: {**m, "architecture": "resnet18"},
  "architecture_name_number": lambda m: {**m, "architecture": {**m["architecture"], "name": 18}},
  "kwargs_list": lambda m: {**m, "architecture": {**m["architecture"], "kwargs": [1]}},
  "torch_kwargs_string": lambda m: {**m, "architecture": {**m["architecture"], "torch_kwargs": "x"}},
  "weights_string": lambda m: {**m, "weights": "model.safetensors"},
  "other_models_manifest": lambda m: {**m, "name": "Beta"},
  "not_utf8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("kind", list(BAD_MANIFESTS))
def test_corrupt_manifest_is_an_integrity_error_naming_it(reg, kind):
  a = _entry(reg, "Alpha")
  bad = BAD_MANIFESTS[kind]
  path = a / "manifest.json"
  if callable(bad):
    path.write_text(json.dumps(bad(_manifest(a))))
  elif isinstance(bad, bytes):
    path.write_bytes(bad)
  else:
    path.write_text(bad)
  for pretrained in (True, False):
    with pytest.raises(echoforge.IntegrityError) as e:
      echoforge.load_model("Alpha", registry=reg, pretrained=pretrained)
    assert str(path) in str(e.value)
  with pytest.raises(echoforge.IntegrityError):
    echoforge.get_manifest("Alpha", registry=reg)


def test_one_corrupt_entry_does_not_break_list_models(reg):
  _entry(reg, "Alpha")
  beta = _entry(reg, "Beta")
  _entry(reg, "Gamma")
  (beta / "manifest.json").write_text('"a string"')
  with pytest.warns(echoforge.BrokenEntryWarning) as w:
    listed = echoforge.list_models(reg)
  assert [m["name"] for m in listed] == ["Alpha", "Gamma"]
  assert str(beta / "manifest.json") in str(w[0].message)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    full = echoforge.list_models(reg, include_broken=True)
  assert [(m["name"], "broken" in m) for m in full] == [("Alpha", False), ("Beta", True), ("Gamma", False)]
  assert "JSON object" in full[1]["broken"]
  with warnings.catch_warnings():  # the not-exported message lists the registry: it must not raise either
    warnings.simplefilter("ignore")
    with pytest.raises(echoforge.ModelNotFoundError, match="Alpha"):
      echoforge.load_model("NoSuchNet", registry=reg)


def test_a_payload_that_is_not_safetensors_is_an_integrity_error(reg):
  a = _entry(reg, "Alpha")
  w = a / "model.safetensors"
  for payload in (b"PK\x03\x04 not safetensors at all" * 10, b"", (10**6).to_bytes(8, "little") + b"{}"):
    w.write_bytes(payload)
    _edit(a, weights={**_manifest(a)["weights"], "sha256": sha256_file(w)})  # a consistent hash
    with pytest.raises(echoforge.IntegrityError, match="safetensors") as e:
      echoforge.load_model("Alpha", registry=reg)
    assert str(w) in str(e.value)


@pytest.mark.parametrize("kwargs", [{"width": -3}, {"num_classes": -1}, {"width": 0}, {"width": 10**6},
                                    {"width": 10**12}, {"width": "wide"}, {"no_such_argument": 1}],
                         ids=["negative", "negative_classes", "zero", "absurd", "overflow", "string", "unknown"])
def test_absurd_architecture_arguments_are_integrity_errors(reg, kwargs):
  a = _entry(reg, "Alpha")
  _edit(a, architecture={"name": ARCH, "kwargs": {**KW, **kwargs}, "torch_kwargs": {}})
  for pretrained in (True, False):
    with pytest.raises(echoforge.IntegrityError, match="architecture") as e:
      echoforge.load_model("Alpha", registry=reg, pretrained=pretrained)  # refused before anything is allocated
    assert str(a / "manifest.json") in str(e.value)


def test_weights_of_another_shape_are_refused_before_building(reg):
  a = _entry(reg, "Alpha")
  _edit(a, architecture={"name": ARCH, "kwargs": {**KW, "width": 8}, "torch_kwargs": {}})
  with pytest.raises(echoforge.IntegrityError, match="do not fit") as e:
    echoforge.load_model("Alpha", registry=reg)
  assert "shape mismatch" in str(e.value) and str(a / "model.safetensors") in str(e.value)


def test_healthy_entries_still_load_identically(reg):
  a = _entry(reg, "Alpha", seed=3)
  torch.manual_seed(3)
  ref = build(ARCH, **KW).eval()
  model = echoforge.load_model("Alpha", registry=reg, sha256=_manifest(a)["weights"]["sha256"])
  with torch.no_grad():
    assert torch.equal(model(_x()), ref(_x()))


# ------------------------------------------------------------------------------ 4. torch + safetensors only
def test_pinned_load_and_listing_run_without_jax(reg):
  a = _entry(reg, "Alpha")
  (reg / "Broken" / "v1").mkdir(parents=True)
  (reg / "Broken" / "v1" / "manifest.json").write_text("42")
  script = BLOCK_JAX_IMPORTS + textwrap.dedent(f"""
    import warnings
    import echoforge
    with warnings.catch_warnings(record=True) as w:
      warnings.simplefilter("always")
      print([m["name"] for m in echoforge.list_models({str(reg)!r})], len(w))
    echoforge.load_model("Alpha", registry={str(reg)!r}, sha256={_manifest(a)["weights"]["sha256"]!r})
    bad = [m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "echojax", "torchvision")]
    assert not bad, bad
    print("OK")
  """)
  env = {k: v for k, v in os.environ.items() if k != "ECHOFORGE_HOME"}
  env["PYTHONPATH"] = str(REPO)
  r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.split() == ["['Alpha']", "1", "OK"]
