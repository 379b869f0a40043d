"""The key-frame LVEF study (issue 15): feature extraction, the features loader, the MLP head with its backbone,
the GP and its uncertainty metrics, and the one-command study on the smoke phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echojax import features as F
from echojax.data import features as FD
from echojax.data.keyframes import key_frames
from echojax.errors import UserError

TINY = {"name": "echonet_dynamic", "data_dir": "", "builder_config": "112", "synthetic_num": 24, "synthetic_seed": 0}


def settings(**kw) -> F.Settings:
  base = dict(data=TINY, backbone="resnet18", backbone_kwargs={"width": 8}, size=28, shard_size=4)
  return F.Settings(**{**base, **kw})


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
  out = tmp_path_factory.mktemp("feats") / "f"
  F.extract(out, settings(), batch_size=6, progress=False)
  return out


def test_extract_writes_every_split_with_its_key_frames(feats):
  from echojax.data.sources import open_source

  info = FD.manifest(feats)
  assert info["frames"] == ["ed", "es", "mid"] and info["dim"] == 64  # resnet18 width 8: 8 * 8 channels
  assert info["backbone"]["weights"] == {"kind": "random", "seed": 0} and len(info["backbone"]["variables_sha256"]) == 64
  source, _ = open_source({**TINY, "preset": "image"}, "val")
  val = FD.read_features(feats, "val")
  assert len(val["index"]) == len(source) == info["splits"]["val"]["num"]
  for i in range(len(source)):
    kf = key_frames(source[i])
    assert val["frame_index"][i].tolist() == [kf.ed, kf.es, kf.mid]
    assert val["frame_source"][i] == kf.source
    assert val["ef"][i] == pytest.approx(float(source[i]["ef"]))
  x = val["features"]
  assert x.shape == (len(source), 3, 64) and np.all(np.isfinite(x))
  assert not np.allclose(x[:, 0], x[:, 1])  # ED and ES frames differ


def test_extract_resumes_from_whole_shards_and_refuses_other_settings(feats, tmp_path):
  import shutil

  out = tmp_path / "copy"
  shutil.copytree(feats, out)
  before = FD.read_features(out, "train")
  shards = FD.shard_paths(out, "train")
  assert len(shards) > 1
  shards[1].unlink()
  mtime = shards[0].stat().st_mtime_ns
  F.extract(out, settings(), batch_size=6, progress=False)
  after = FD.read_features(out, "train")
  assert shards[0].stat().st_mtime_ns == mtime  # the finished shard was kept, not recomputed
  np.testing.assert_allclose(after["features"], before["features"], rtol=1e-5, atol=1e-5)
  with pytest.raises(UserError, match="other settings.*size"):
    F.extract(out, settings(size=32), progress=False)
  with pytest.raises(UserError, match="takes videos"):
    F.extract(tmp_path / "video", settings(backbone="r3d_18"), progress=False)
  (tmp_path / "user").mkdir()
  (tmp_path / "user" / "notes.txt").write_text("mine")
  with pytest.raises(UserError, match="not a features folder"):
    F.extract(tmp_path / "user", settings(), progress=False)
  assert (tmp_path / "user" / "notes.txt").read_text() == "mine"


def _cfg(feats, **kw):
  import ml_collections

  return ml_collections.ConfigDict({"data_dir": str(feats), "feature_frame": "es", "batch_size": 4, **kw})


def test_loader_follows_the_pipeline_contract(feats):
  train = FD.make_loader(_cfg(feats), "train", train=True, seed=3)
  it = iter(train)
  first = [next(it) for _ in range(3)]
  state = train.get_state()
  nxt = next(it)
  again = FD.make_loader(_cfg(feats), "train", train=True, seed=3)
  again.set_state(state)
  np.testing.assert_array_equal(next(iter(again))["index"], nxt["index"])
  assert first[0]["features"].shape == (4, 64) and train.spec()["features"].shape == (4, 64)
  ev = FD.make_loader(_cfg(feats, feature_frame="concat"), "val", train=False, seed=0)
  batches = list(ev)
  assert len(batches) == len(ev) and batches[0]["features"].shape == (4, 192)
  idx = np.concatenate([b["index"][b["valid"]] for b in batches])
  np.testing.assert_array_equal(idx, np.arange(ev.num_examples))
  assert ev.targets(["ef"])["ef"].shape == (ev.num_examples,)
  with pytest.raises(UserError, match="feature_frame"):
    FD.make_loader(_cfg(feats, feature_frame="systole"), "val", train=False, seed=0)
  with pytest.raises(UserError, match="not in the features folder"):
    FD.make_loader(_cfg(feats), "external", train=False, seed=0)


def test_mlp_with_backbone_is_the_mlp_on_the_backbones_features():
  from echojax.models import get_model
  from echojax.models.mlp import with_backbone
  from echojax.models.summary import host_init

  images = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  backbone = get_model("resnet18", num_classes=0, width=8)
  bvars = host_init(backbone, images, seed=1, train=False)
  feats, _ = backbone.apply(bvars, images, train=False)
  mlp = get_model("feature_mlp", num_classes=2, hidden=(16,))
  mvars = host_init(mlp, np.asarray(feats), seed=2, train=False)
  full = get_model("feature_mlp", num_classes=2, hidden=(16,), backbone="resnet18", backbone_kwargs={"width": 8})
  out, _ = full.apply(with_backbone(mvars, bvars), images, train=False)
  ref, aux = mlp.apply(mvars, feats, train=False)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  assert aux["features"].shape == (3, 16)
  with pytest.raises(UserError, match="already hold a backbone"):
    with_backbone(with_backbone(mvars, bvars), bvars)
  with pytest.raises(UserError, match="no backbone"):
    mlp.apply(mvars, images, train=False)


def test_gp_fits_train_only_is_calibrated_and_saves_exactly(tmp_path):
  from echojax.gp import GPRegressor
  from echojax.metrics import interval_coverage

  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 10))
  y = 55 + 8 * np.sin(x[:, 0]) + 4 * x[:, 1] + rng.normal(0, 2.0, 500)
  gp = GPRegressor(n_components=0, hyper_rows=150).fit(x[:400], y[:400])
  assert gp.meta["n_hyper"] == 150 and gp.meta["n_train"] == 400
  mean, std = gp.predict(x[400:])
  assert np.mean(np.abs(mean - y[400:])) < 3.0  # the noise alone gives 1.6; the mean alone ~7
  cov = interval_coverage(y[400:], mean, std)
  assert 0.55 < cov["coverage_68"] < 0.82 and 0.88 < cov["coverage_95"] <= 1.0
  GPRegressor.load(gp.save(tmp_path / "gp"))
  m2, s2 = GPRegressor.load(tmp_path / "gp").predict(x[400:])
  np.testing.assert_array_equal(m2, mean)
  np.testing.assert_array_equal(s2, std)
  import torch

  from echoforge.gp import GaussianProcess

  tm, ts = GaussianProcess.load(tmp_path / "gp")(torch.from_numpy(x[400:]))
  np.testing.assert_allclose(tm.numpy(), mean, rtol=0, atol=1e-4)
  np.testing.assert_allclose(ts.numpy(), std, rtol=0, atol=1e-4)
  with pytest.raises(UserError, match="NaN"):
    gp.predict(np.full((2, 10), np.nan))
  with pytest.raises(UserError, match="dims"):
    gp.predict(x[:2, :5])


def test_referral_and_coverage_metrics():
  from echojax.metrics import interval_coverage, referral_curve

  rng = np.random.default_rng(1)
  std = rng.uniform(0.5, 5.0, 4000)
  y = rng.normal(0, std)
  cov = interval_coverage(y, np.zeros_like(y), std)
  assert cov["coverage_68"] == pytest.approx(0.68, abs=0.03) and cov["coverage_95"] == pytest.approx(0.95, abs=0.02)
  ref = referral_curve(y, np.zeros_like(y), std, fractions=(0.0, 0.3))
  r0, r30 = ref["curve"]
  assert r30["mae_kept"] < r0["mae_kept"] and r30["mae_referred"] > r30["mae_kept"]
  assert r30["mae_kept_random"] == pytest.approx(r0["mae_kept"], rel=0.05)
  with pytest.raises(UserError, match="NaN"):
    interval_coverage([1.0, np.nan], [0, 0], [1, 1])


@pytest.mark.slow
def test_study_smoke_end_to_end(tmp_path):
  from echojax import keyframe_study

  paths = keyframe_study.run_study("keyframe_lvef:smoke", out=tmp_path / "s", bootstrap=20)
  frames = paths["frames"].read_text()
  for name in ("EDF", "ESF", "MF", "Ensemble"):
    assert name in frames
  models = paths["models"].read_text()
  for name in ("MLP (EDF)", "GPR (MF)", "Ensemble (val-weighted)"):
    assert name in models
  doc = json.loads(paths["json"].read_text())
  w = doc["weights"]["reg"]
  assert set(w) == {f"{m}:{f}" for m in ("reg", "gp") for f in ("ed", "es", "mid")}
  assert sum(w.values()) == pytest.approx(1.0)
  assert (tmp_path / "s" / "runs" / "cls_es" / "config.json").is_file()
  assert (paths["plots"] / "referral.png").is_file() and (paths["plots"] / "calibration_gp_es.png").is_file()
  # a user's cine: key frames found (estimated, no tracings), EF with its std, the class, a PNG strip
  from echojax.data.datasets import DATASETS  # noqa: F401
  from echojax.data.prepare import ensure_synthetic

  raw = sorted((ensure_synthetic("echonet_dynamic", "112", num=40, seed=0).parent / "raw" / "Videos").glob("*.avi"))[:2]
  assert len(raw) == 2
  (tmp_path / "broken.avi").write_bytes(b"")
  csv_path = keyframe_study.predict_cines(tmp_path / "s", raw + [tmp_path / "broken.avi"])
  import csv

  rows = list(csv.DictReader(csv_path.open()))
  assert [r["file"] for r in rows] == [str(p) for p in raw]  # the empty file is listed in the .skipped.csv
  assert "broken.avi" in (csv_path.parent / "predictions.skipped.csv").read_text()
  for r in rows:
    assert r["key_frame_source"] != "tracings" and float(r["ef_std"]) > 0 and r["class"] in ("EF<40", "EF>=40")
    assert int(r["ed_frame"]) != int(r["es_frame"]) and Path(r["frames_png"]).is_file()
  # each head exports with its backbone (image in, parity checked by the export)
  import echoforge
  import torch

  exported = keyframe_study.export_heads(tmp_path / "s", registry=tmp_path / "reg")
  assert len(exported) == 6
  net = echoforge.load_model("keyframe_lvef_cls_es", registry=tmp_path / "reg")
  assert net(torch.zeros(1, 3, 28, 28)).shape == (1, 2)
  # --collect rebuilds the tables from the finished runs without training
  again = keyframe_study.run_study("keyframe_lvef:smoke", out=tmp_path / "s", bootstrap=20, collect=True)
  assert again["models"].read_text() == models


def test_extract_with_imagenet_weights_from_a_local_file(tmp_path):
  """A torchvision-named .pth (made here from the torch mirror) is loaded, recorded with its sha256, and the
  features equal the torch ResNet's pooled output on the same ImageNet-normalised key frames."""
  import torch

  from echoforge import torchvision_names
  from echoforge.models import build
  from echojax.data.pipeline import build_loader
  from echojax.data.sources import open_source

  torch.manual_seed(0)
  net = build("resnet18", num_classes=10, width=8).eval()
  sd = net.state_dict()
  names = torchvision_names.to_torchvision({k: tuple(v.shape) for k, v in sd.items()})
  path = tmp_path / "resnet18-imagenet.pth"
  torch.save({names[k]: v for k, v in sd.items()}, path)
  out = F.extract(tmp_path / "f", settings(weights=str(path), norm="imagenet"), splits=("val",), progress=False)
  info = FD.manifest(out)
  assert info["backbone"]["weights"]["kind"] == "file"
  assert info["backbone"]["weights"]["sha256"] == F.file_sha256(path)
  got = FD.read_features(out, "val")["features"][:, 1]  # es
  s = settings(weights=str(path), norm="imagenet")
  source, _ = open_source({**TINY, "preset": "image"}, "val")
  batch = next(iter(build_loader(source, (np.zeros(1, np.float32), np.full(1, 255.0, np.float32)),
                                 F._data_cfg(s, {}, "es", len(source)), "val", train=False, seed=0,
                                 process_index=0, process_count=1)))
  x = (batch["image"] - np.asarray(F.IMAGENET_MEAN, np.float32)) / np.asarray(F.IMAGENET_STD, np.float32)
  feats_net = build("resnet18", num_classes=0, width=8).eval()
  feats_net.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("fc.", "head."))})
  with torch.no_grad():
    ref = feats_net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
  np.testing.assert_allclose(got, ref[:len(got)], rtol=1e-4, atol=1e-4)
