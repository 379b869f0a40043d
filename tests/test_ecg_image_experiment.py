"""The ECG-image experiment (ecg_image_resnet50) and its ablation sweep: every run's overrides reach the model and
the loss; a local smoke sweep of the full model and the plain ResNet50 trains, evaluates and writes the table
with its extra metric columns."""

import csv
import json
import os
import subprocess
import sys

import pytest

from echojax.config import load_config
from echojax.paths import REPO_ROOT
from experiments.ecg_image_resnet50 import SWITCHES
from launch.sweep import load_sweep


def test_recipe_config():
  c = load_config("ecg_image_resnet50")
  assert c.task.loss == "focal" and c.task.focal_gamma == 2.0 and c.task.focal_alpha == "balanced"
  assert c.task.class_names == ["NORM", "MI", "STTC", "CD", "HYP"] and c.data.name == "ecg_images"
  assert c.optim.name == "adamw" and c.optim.schedule == "cosine" and c.optim.warmup_steps > 0
  aug = c.data.augment
  assert not aug.get("flip", False) and aug.rotation <= 5 and aug.fill == 255  # ECG-safe: small, white, no flip
  assert all(c.model.kwargs[s] for s in SWITCHES) and c.model.name == "ecg_resnet50" and "depth" not in c.model.kwargs
  r18 = load_config("ecg_image_resnet50:depth=18,smoke")  # the variant string picks the backbone depth
  assert r18.model.name == "ecg_resnet" and r18.model.kwargs.depth == 18
  from echojax.errors import UserError
  from echojax.models import get_model

  assert get_model(r18.model.name, **r18.model.kwargs.to_dict()).depth == 18
  with pytest.raises(UserError, match="depth=20"):
    load_config("ecg_image_resnet50:depth=20")


def test_ablation_sweep_runs_reach_the_model_and_loss(monkeypatch):
  monkeypatch.delenv("ECHOJAX_SWEEP_RUNS", raising=False)
  sweep = load_sweep("ecg_image_ablation", "demo")
  names = [r["name"] for r in sweep["runs"]]
  assert names == ["full"] + [f"no_{s}" for s in SWITCHES] + ["no_focal", "plain_head", "plain"]
  for r in sweep["runs"]:
    c = load_config(sweep["config"], {k: str(v) for k, v in r["overrides"].items()})
    off = {s for s in SWITCHES if not c.model.kwargs[s]}
    if r["name"] in ("plain", "plain_head"):
      head = [] if r["name"] == "plain" else [512, 256]
      assert off == set(SWITCHES) and list(c.model.kwargs.head_units) == head and c.task.loss == "cross_entropy"
      if r["name"] == "plain_head":  # the same run as the config argument
        same = load_config("ecg_image_resnet50:plain,demo").to_dict()
        assert {**c.to_dict(), "config_spec": None} == {**same, "config_spec": None}
    elif r["name"] == "no_focal":
      assert not off and c.task.loss == "cross_entropy"
    else:
      assert off == ({r["name"][3:]} if r["name"] != "full" else set()) and c.task.loss == "focal"


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
  """The full model and the plain ResNet50 trained and evaluated on the smoke phantoms through launch.sweep."""
  runs = ["full", "plain"]
  env = {**os.environ, "ECHOJAX_SWEEP_RUNS": ",".join(runs)}
  out = tmp_path_factory.mktemp("ecg_sweep")
  proc = subprocess.run([sys.executable, "-m", "launch.sweep", "ecg_image_ablation", "--local", "--variant", "smoke",
                         "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return out, runs


@pytest.mark.slow
def test_local_smoke_ablation_writes_the_table(smoke_sweep):
  out, runs = smoke_sweep
  rows = list(csv.DictReader((out / "results.csv").open()))
  assert [r["name"] for r in rows] == runs and all(r["status"] == "ok" for r in rows)
  for r in rows:
    assert 0.0 <= float(r["metrics.macro_f1"]) <= 1.0 and 0.0 <= float(r["metrics.macro_specificity"]) <= 1.0
    assert float(r["metrics.accuracy_ci_low"]) <= float(r["metrics.accuracy"]) <= float(r["metrics.accuracy_ci_high"])
  table = (out / "results.md").read_text()
  assert "metrics.macro_specificity [95% CI]" in table and table.count("| ok |") == 2
  m = json.loads((out / "full" / "eval_test" / "metrics.json").read_text())["metrics"]
  assert set(m["per_class"]) == {"NORM", "MI", "STTC", "CD", "HYP"}
  assert {"specificity", "precision", "recall", "f1", "auroc"} <= set(m["per_class"]["MI"])
  assert (out / "full" / "eval_test" / "confusion_matrix.png").stat().st_size > 1000


@pytest.mark.slow
def test_predict_on_real_printouts(smoke_sweep, fixtures_dir, tmp_path):
  """Every real printout in ../shared/fixtures gets a row (any size and format); a broken file is a named skip;
  a file is fed to the model exactly as the builder stores it (letterboxed on white)."""
  import shutil

  import numpy as np

  from echojax import predict
  from tfds_builders.ecg_images import stored_image

  out, _ = smoke_sweep
  real = sorted(p for p in (fixtures_dir / "ecg_images").iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))
  assert len(real) == 6
  folder = tmp_path / "printouts"
  folder.mkdir()
  for p in real:
    shutil.copy(p, folder / p.name)
  (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"no jpeg here" * 20)
  res = predict.predict_images(out / "full", folder, tmp_path / "pred.csv")
  assert sorted(r["file"].split("/")[-1] for r in res.rows) == sorted(p.name for p in real)
  assert [s[0].split("/")[-1] for s in res.skipped] == ["broken.jpg"]
  for r in res.rows:
    probs = [r[f"prob_{c}"] for c in ("NORM", "MI", "STTC", "CD", "HYP")]
    assert abs(sum(probs) - 1.0) < 1e-5 and r["predicted_class"] in ("NORM", "MI", "STTC", "CD", "HYP")
  assert predict.image_reader("ecg_images") is stored_image
  img = stored_image(real[0], 224)
  assert img.shape == (224, 224, 3) and (img[0] == 255).all() or (img[:, 0] == 255).all()  # white letterbox bars
  np.testing.assert_array_equal(stored_image(real[0], 224), img)


@pytest.mark.slow
def test_exported_model_gives_predict_s_probabilities(smoke_sweep, fixtures_dir, tmp_path):
  """`python -m echojax.export` of the trained full model passes its parity gate, and the PyTorch module from the
  registry, fed a real printout the way the manifest says (the dataset's stored image, resized, normalised with
  the recorded mean/std), gives the probabilities `echojax.predict` wrote for it."""
  import cv2
  import numpy as np
  import torch

  import echoforge
  from echojax import predict
  from tfds_builders.ecg_images import stored_image

  out, _ = smoke_sweep
  reg = tmp_path / "registry"
  proc = subprocess.run([sys.executable, "-m", "echojax.export", "--workdir", str(out / "full"), "--name", "EcgImage",
                         "--registry", str(reg)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  manifest = json.loads(next(reg.glob("EcgImage/v*/manifest.json")).read_text())
  assert manifest["architecture"]["name"] == "ecg_resnet50" and manifest["parity"]["max_abs_diff"] <= 1e-4
  model = echoforge.load_model("EcgImage", registry=reg)
  spec = manifest["input"]
  size = tuple(spec["size"])
  path = sorted((fixtures_dir / "ecg_images").glob("*.png"))[0]
  img = cv2.resize(stored_image(path, 224), size[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
  x = (img - np.array(spec["normalisation"]["mean"], np.float32)) / np.array(spec["normalisation"]["std"], np.float32)
  with torch.no_grad():
    probs = torch.softmax(model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())), -1)[0].numpy()
  row = predict.predict_images(out / "full", path, tmp_path / "pred.csv").rows[0]
  np.testing.assert_allclose(probs, [row[f"prob_{c}"] for c in manifest["class_names"]], atol=1e-4)
