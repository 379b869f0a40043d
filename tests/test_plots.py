"""echojax.plots: every plot writes a non-empty PNG of the documented pixel size, and bad inputs say what is wrong."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from echojax import metrics as M
from echojax import plots as P
from echojax.errors import UserError

NAMES = ["A2C", "A3C", "A4C", "PLAX"]


def _png(path, size):
  """The file is a real, non-blank PNG of exactly ``size`` pixels."""
  assert path.is_file() and path.stat().st_size > 2000
  with Image.open(path) as im:
    assert im.format == "PNG"
    assert im.size == size
    arr = np.asarray(im.convert("L"))
  assert arr.min() < 100 and arr.max() > 200  # something dark drawn on a light background


@pytest.fixture(scope="module")
def multiclass():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 200)
  logits = rng.normal(size=(200, 4))
  logits[np.arange(200), labels] += 1.5
  p = np.exp(logits)
  return labels, p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ef():
  rng = np.random.default_rng(1)
  yt = rng.uniform(15, 75, 150)
  return yt, yt + rng.normal(0, 6, 150)


def test_confusion_matrix_png(tmp_path, multiclass):
  labels, probs = multiclass
  cm = M.classification_metrics(labels, probs, NAMES)["confusion_matrix"]
  out = P.plot_confusion_matrix(cm, NAMES, tmp_path / "sub" / "cm.png")
  assert out == tmp_path / "sub" / "cm.png"
  _png(out, (1000, 450))  # default (2 * 4.5 + 1, 4.5) in at 100 dpi
  _png(P.plot_confusion_matrix(cm, NAMES, tmp_path / "cm2.png", figsize=(8, 4), dpi=50), (400, 200))
  with pytest.raises(UserError, match="class_names has 3 names"):
    P.plot_confusion_matrix(cm, NAMES[:3], tmp_path / "bad.png")
  with pytest.raises(UserError, match="ending in .png"):
    P.plot_confusion_matrix(cm, NAMES, tmp_path / "cm.jpg")


def test_roc_and_pr_binary_and_one_vs_rest(tmp_path, multiclass):
  labels, probs = multiclass
  _png(P.plot_roc_curve(labels, probs, tmp_path / "roc_ovr.png", class_names=NAMES), (600, 550))
  _png(P.plot_pr_curve(labels, probs, tmp_path / "pr_ovr.png", class_names=NAMES), (600, 550))
  y = labels == 2
  _png(P.plot_roc_curve(y, probs[:, 2], tmp_path / "roc.png"), (600, 550))
  _png(P.plot_pr_curve(y, probs[:, 2], tmp_path / "pr.png", figsize=(5, 4)), (500, 400))
  # a class with no examples has no curve but does not crash
  _png(P.plot_roc_curve(np.minimum(labels, 2), probs, tmp_path / "roc_missing.png", class_names=NAMES), (600, 550))
  # a split with one class only: both plots say there is no curve, with no matplotlib warning
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")
    one = np.zeros(len(labels), dtype=int)
    _png(P.plot_pr_curve(one == 1, probs[:, 1], tmp_path / "pr_none.png"), (600, 550))
    _png(P.plot_roc_curve(one == 1, probs[:, 1], tmp_path / "roc_none.png"), (600, 550))


def test_ef_scatter_and_bland_altman(tmp_path, ef):
  yt, yp = ef
  _png(P.plot_ef_scatter(yt, yp, tmp_path / "ef.png", thresholds=(50,)), (600, 600))
  _png(P.plot_bland_altman(yt, yp, tmp_path / "ba.png"), (700, 500))
  with pytest.raises(UserError, match="ef_true has 150 examples but ef_pred has 3"):
    P.plot_ef_scatter(yt, yp[:3], tmp_path / "bad.png")


def _write_jsonl(path, records, tail=""):
  path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
  return path


def test_training_curves_from_jsonl(tmp_path):
  recs = []
  for s in range(0, 200, 10):
    recs.append({"step": s, "train/loss": 2.0 / (1 + s), "train/lr": 1e-3})
    if s % 50 == 0:
      recs.append({"step": s, "val": {"loss": 2.5 / (1 + s), "mae": 10.0 - s / 50}, "val/r2": s / 200})
  path = _write_jsonl(tmp_path / "metrics.jsonl", recs, tail='{"step": 200, "train/lo')  # cut-off last line
  # panels: loss (train+val), mae, r2, lr -> 3 columns x 2 rows of 4.5 x 3.5 in
  _png(P.plot_training_curves(path, tmp_path / "curves.png"), (1350, 700))
  _png(P.plot_training_curves(recs, tmp_path / "loss.png", keys=["loss"]), (450, 350))
  bad = _write_jsonl(tmp_path / "bad.jsonl", recs[:2], tail="not json\n" + json.dumps(recs[2]) + "\n")
  with pytest.raises(UserError, match="bad.jsonl line 3: not valid JSON"):
    P.plot_training_curves(bad, tmp_path / "x.png")
  with pytest.raises(UserError, match="no numeric metrics"):
    P.plot_training_curves(path, tmp_path / "x.png", keys=["nonexistent"])
  with pytest.raises(UserError, match="metrics file not found"):
    P.plot_training_curves(tmp_path / "missing.jsonl", tmp_path / "x.png")


def test_training_curves_trainer_format_picks_headline_panels(tmp_path):
  """echojax.train writes {"step", "split": "train"|"val", unprefixed metrics}; val records carry many keys."""
  recs = []
  for s in range(10, 110, 10):
    recs.append({"step": s, "split": "train", "loss": 1.0 / s, "accuracy": 0.5 + s / 250, "epoch": s / 50,
                 "clips_per_s": 12.0, "lr": 1e-3})
    if s % 50 == 0:
      val = {"loss": 1.2 / s, "mae": 9.0 - s / 20, "rmse": 11.0 - s / 20, "r2": s / 120, "n": 40, "tp": 3,
             "mae_ci_low": 7.0, "mae_ci_high": 10.0, "bias": 0.3}
      val.update({f"ef>={t}/{k}": 0.7 for t in (35, 40, 45, 50) for k in ("auroc", "auprc", "f1", "specificity")})
      recs.append({"step": s, "split": "val", **val})
  path = _write_jsonl(tmp_path / "metrics.jsonl", recs)
  series = {}
  original = P._save

  def spy(fig, out):  # record the panel titles and legends the figure was built with
    for ax in fig.axes:
      if ax.get_visible():
        series[ax.get_title()] = sorted(line.get_label() for line in ax.get_lines())
    return original(fig, out)

  P._save = spy
  try:
    out = P.plot_training_curves(path, tmp_path / "curves.png", max_panels=6)
  finally:
    P._save = original
  _png(out, (1350, 700))
  assert list(series) == ["loss", "accuracy", "mae", "rmse", "r2", "bias"]
  assert series["loss"] == ["train", "val"] and series["accuracy"] == ["train"]
  assert not any(k in series for k in ("n", "tp", "epoch", "mae_ci_low"))


def test_split_key_grouping():
  assert P._split_key("train/loss") == ("train", "loss")
  assert P._split_key("val_mae") == ("val", "mae")
  assert P._split_key("eval.auroc") == ("eval", "auroc")
  assert P._split_key("loss") == ("train", "loss")
  assert P._split_key("learning_rate") == ("", "learning_rate")
  assert P._split_key("loss", "val") == ("val", "loss")
  assert P._split_key("train/loss", "val") == ("train", "loss")


def test_metric_vs_param(tmp_path):
  out = P.plot_metric_vs_param([1e-4, 3e-4, 1e-3], {"val": [0.7, 0.8, 0.75], "test": [0.68, float("nan"), 0.7]},
                               tmp_path / "sweep.png", yerr={"val": [0.02, 0.01, 0.03]}, xlabel="lr",
                               ylabel="AUROC", point_labels=["a", "b", "c"], logx=True)
  _png(out, (600, 450))
  _png(P.plot_metric_vs_param(["r18", "r34", "r50"], [3.1, 2.9, None], tmp_path / "cat.png", yerr=[0.1, 0.2, 0.1]),
       (600, 450))
  _png(P.plot_metric_vs_param(["a", "b", "c"], [0.8, 0.7, None], tmp_path / "ci.png",
                              yerr=[[0.1, 0.05, None], [0.05, 0.1, None]]), (600, 450))  # (2, N): an interval
  with pytest.raises(UserError, match="has 2 values but x has 3"):
    P.plot_metric_vs_param([1, 2, 3], [1.0, 2.0], tmp_path / "bad.png")
  with pytest.raises(UserError, match="has 2 values but x has 3"):
    P.plot_metric_vs_param([1, 2, 3], [1.0, 2.0, 3.0], tmp_path / "bad.png", yerr=[[0.1, 0.1], [0.1, 0.1]])
  with pytest.raises(UserError, match="has 4 values but x has 3"):  # a (2, N) interval counts its N pairs
    P.plot_metric_vs_param([1, 2, 3], [1.0, 2.0, 3.0], tmp_path / "bad.png", yerr=[[0.1] * 4, [0.1] * 4])


def test_plots_do_not_touch_pyplot_or_import_matplotlib_eagerly(tmp_path):
  code = ("import sys, echojax.plots as P; assert 'matplotlib' not in sys.modules; "
          f"P.plot_bland_altman([1.0, 2.0, 3.0], [1.5, 2.0, 2.5], {str(tmp_path / 'ba.png')!r}); "
          "print('matplotlib.pyplot' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"
