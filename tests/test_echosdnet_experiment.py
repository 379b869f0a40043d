"""The echosdnet experiment: recipe fields, Keras parameter summary, the trainer's partial fine-tuning and ImageNet
init hooks (with a Keras .h5 the test writes itself), evaluation outputs, and predict through a trained run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echojax import config as config_lib
from echojax import tasks, train
from echojax.models import echosdnet, summary
from echojax.pretrained import _keras_flax_names


def test_recipe_fields():
  c = config_lib.load_config("echosdnet")
  assert (c.optim.name, c.optim.lr, c.optim.schedule) == ("adam", 1e-5, "constant")
  assert c.optim.trainable == echosdnet.TRAINABLE_REGEX
  assert (c.task.kind, c.task.num_classes, list(c.task.class_names)) == ("classification", 2, ["single", "dual"])
  # plain categorical cross-entropy (the task's defaults)
  assert c.task.get("label_smoothing", 0.0) == 0.0 and c.task.get("class_weights", None) is None
  assert c.train.num_epochs == 20.0 and c.train.early_stopping_patience == 5
  assert (c.eval.best_metric, c.eval.best_mode) == ("log_loss", "min")
  assert dict(c.data.augment) == {"rotation": 15.0, "shift": 0.1, "zoom": 0.2}
  assert (c.data.name, c.data.preset, c.data.size, c.data.value_range) == ("unity", "image", None, "unit")
  assert c.model.name == "echosdnet" and c.model.kwargs.to_dict() == {"width": 64, "layout": "keras",
                                                                       "frozen_stages": 3}
  assert c.init.imagenet == ""
  demo = config_lib.load_config("echosdnet:demo")
  assert demo.optim.trainable == "" and demo.model.kwargs.frozen_stages == -1 and demo.data.size == 64
  assert dict(demo.data.augment) == dict(c.data.augment)
  # the ImageNet path is a command-line override
  o = config_lib.load_config("echosdnet", ["init.imagenet=/weights/resnet50_notop.h5"])
  assert o.init.imagenet == "/weights/resnet50_notop.h5"


def test_full_size_summary_counts_like_keras(capsys):
  """The trainer's start-of-run summary for the real recipe: 23,858,370 / 15,246,658 / 8,611,712."""
  c = config_lib.load_config("echosdnet")
  model = train.build_model(c, tasks.get_task(c))
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
  train.print_param_summary(c, {"params": v["params"], "batch_stats": v["batch_stats"]})
  out = capsys.readouterr().out
  assert "Total params: 23,858,370" in out
  assert "Trainable params: 15,246,658" in out
  assert "Non-trainable params: 8,611,712" in out


def write_keras_h5(path, variables, seed=0) -> dict:
  """A Keras-2-style ResNet50 weights file (conv1_conv, conv2_block1_1_bn, ...) with values different from the
  model's own init; returns {flax path: array written}."""
  rng = np.random.default_rng(seed)
  bb_p, bb_s = variables["params"]["backbone"], variables["batch_stats"]["backbone"]
  written = {}
  with h5py.File(path, "w") as f:
    for lname, mod in _keras_flax_names(50).items():
      p = bb_p
      s = bb_s
      for m in mod:
        p, s = p[m], s.get(m, {})
      g = f.create_group(lname)
      if lname.endswith("_bn"):
        items = {"gamma": ("params", "scale", 1 + 0.1 * rng.standard_normal(p["scale"].shape)),
                 "beta": ("params", "bias", 0.1 * rng.standard_normal(p["bias"].shape)),
                 "moving_mean": ("batch_stats", "mean", 0.1 * rng.standard_normal(s["mean"].shape)),
                 "moving_variance": ("batch_stats", "var", rng.uniform(0.5, 1.5, s["var"].shape))}
      else:
        k = p["kernel"]
        fan_in = int(np.prod(k.shape[:-1]))
        items = {"kernel": ("params", "kernel", rng.standard_normal(k.shape) * np.sqrt(1.0 / fan_in)),
                 "bias": ("params", "bias", 0.01 * rng.standard_normal(p["bias"].shape))}
      for w, (coll, leaf, arr) in items.items():
        g.create_dataset(f"{w}:0", data=arr.astype(np.float32))
        written[(coll, "backbone", *mod, leaf)] = arr.astype(np.float32)
  return written


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """echosdnet:smoke trained 2 steps with conv1-conv4 frozen and the backbone initialised from a written .h5."""
  import contextlib
  import io

  tmp = tmp_path_factory.mktemp("echosdnet")
  c = config_lib.load_config("echosdnet:smoke")
  model = train.build_model(c, tasks.get_task(c))
  variables = summary.host_init(model, jnp.zeros((1, 32, 32, 3)))
  h5 = tmp / "resnet50_notop.h5"
  written = write_keras_h5(h5, variables)
  workdir = tmp / "run"
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    # no validation during training (one compile less); evaluate then uses the latest checkpoint
    train.main(["--config", "echosdnet:smoke", "--workdir", str(workdir), f"--config.init.imagenet={h5}",
                "--config.evals.val.every_steps=0"])
  return workdir, written, out.getvalue(), variables


@pytest.mark.slow
def test_hooks_freeze_and_imagenet_init(smoke_run):
  from echojax.run import Run

  workdir, written, printed, variables = smoke_run
  # the start-of-run summary counts the smoke model's conv5 + head as trainable
  counts = summary.param_counts(variables, summary.trainable_mask(variables["params"], echosdnet.TRAINABLE_REGEX))
  for label, key in (("Total", "total"), ("Trainable", "trainable"), ("Non-trainable", "non_trainable")):
    assert re.search(rf"^{label} params: {counts[key]:,}$", printed, re.M), printed
  assert 0 < counts["trainable"] < counts["total"]
  step, _, v = Run.load(workdir).restore("latest")
  assert step == 2
  flat = {}
  for coll in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(v[coll])[0]:
      flat[(coll, *[p.key for p in path])] = np.asarray(leaf)
  assert len(written) == sum(1 for k in flat if k[1] == "backbone")  # every backbone tensor came from the file
  frozen = [k for k in written if not re.search(echosdnet.TRAINABLE_REGEX, "/".join(k[1:]))]
  trained = [k for k in written if k[0] == "params" and re.search(echosdnet.TRAINABLE_REGEX, "/".join(k[1:]))]
  assert frozen and trained
  for k in frozen:  # loaded from the file and never changed by 2 Adam steps (incl. BN moving statistics)
    np.testing.assert_array_equal(flat[k], written[k], err_msg="/".join(k))
  moved = [k for k in trained if not np.array_equal(flat[k], written[k])]
  assert len(moved) > len(trained) // 2  # conv5 started from the file and trained
  assert max(float(np.max(np.abs(flat[k] - written[k]))) for k in trained) < 1e-3  # 2 steps at lr 1e-5


@pytest.mark.slow
def test_resume_does_not_reload_imagenet(smoke_run, capsys):
  """A rerun resumes the checkpoint; config.init.imagenet applies to runs that start from scratch only (a missing
  file would raise UserError if the hook ran)."""
  from echojax.run import Run

  workdir, *_ = smoke_run
  before = Run.load(workdir).restore("latest")[2]
  train.main(["--config", "echosdnet:smoke", "--workdir", str(workdir), "--config.init.imagenet=/no/such/file.h5",
              "--config.evals.val.every_steps=0"])
  assert "Trainable params:" in capsys.readouterr().out
  step, _, after = Run.load(workdir).restore("latest")
  assert step == 2
  jax.tree.map(np.testing.assert_array_equal, before, after)


@pytest.mark.slow
def test_evaluate_reports_classification_metrics_and_plots(smoke_run):
  from echojax import evaluate

  workdir, *_ = smoke_run
  s = evaluate.evaluate_workdir(workdir, split="test", clips="one", bootstrap=0)
  m = s["metrics"]
  for key in ("loss", "log_loss", "accuracy", "auroc_macro_ovr", "auprc_macro_ovr", "confusion_matrix"):
    assert key in m, key
  assert np.isfinite(m["loss"]) and 0.0 <= m["accuracy"] <= 1.0
  for cls in ("single", "dual"):
    assert {"precision", "recall", "f1", "auroc", "auprc"} <= set(m["per_class"][cls])
  assert np.asarray(m["confusion_matrix"]).shape == (2, 2)
  out = workdir / "eval" / f"test_{s['checkpoint']}"
  for png in ("confusion_matrix.png", "roc.png", "pr.png"):
    assert (out / png).stat().st_size > 1000, png


@pytest.fixture(scope="module")
def checked_frame(smoke_run, tmp_path_factory):
  """The raw 800x600 phantom PNGs of the test split through ``echojax.predict`` give the probabilities that
  ``echojax.evaluate`` gives the same frames through builder + eval loader; returns (workdir, one raw file)."""
  from echojax import evaluate, predict

  workdir, *_ = smoke_run
  config = config_lib.from_json((workdir / "config.json").read_text())
  out = tmp_path_factory.mktemp("eval")
  evaluate.evaluate_workdir(workdir, split="test", clips="one", checkpoint="latest", bootstrap=0, out_dir=out)
  with (out / "predictions.csv").open() as f:
    want = {r["file_name"]: r for r in csv.DictReader(f)}
  raw = Path(config.data.data_dir).parent / "raw"
  files = [raw / name for name in sorted(want)]
  assert files and all(p.is_file() for p in files)
  res = predict.predict_images(workdir, files, tmp_path_factory.mktemp("pred") / "p.csv", checkpoint="latest")
  assert len(res.rows) == len(files) and not res.skipped
  for row in res.rows:
    name = str(Path(row["file"]).relative_to(raw))
    for c in ("single", "dual"):  # evaluate's CSV keeps 6 significant digits
      assert abs(row[f"prob_{c}"] - float(want[name][f"prob_{c}"])) < 2e-6, (name, c)
  return workdir, files[0]


@pytest.mark.slow
def test_predict_real_frames_with_the_trained_run(checked_frame, fixtures_dir, tmp_path):
  """The real UNITY frames plus one phantom in a single call: 7 rows, probabilities summing to 1."""
  from echojax import predict

  workdir, phantom = checked_frame
  res = predict.predict_images(workdir, [fixtures_dir / "echo_images", phantom], tmp_path / "p.csv")
  assert len(res.rows) == 7 and not res.skipped
  assert res.rows[-1]["file"] == str(phantom)
  assert all(abs(r["prob_single"] + r["prob_dual"] - 1.0) < 1e-5 for r in res.rows)
  assert json.loads(json.dumps(res.rows))  # plain JSON-able values
