"""LVEF from key frames (seed 004): ResNet50 features of the ED, ES and mid frames, MLP heads and a Gaussian process.

    python -m echojax.keyframe_study --config keyframe_lvef:demo     # the published tables on the phantoms
    python -m echojax.keyframe_study --config keyframe_lvef          # full size (real EchoNet: --data-dir)
    python -m echojax.train --config keyframe_lvef:head=reg,frame=ed --config.data.data_dir=FEATS   # one head

A config of this file is ONE MLP head (``head=cls``: EF <= 40 vs > 40, cross-entropy; ``head=reg``: EF, MSE) on
ONE frame's features (``frame=ed|es|mid``, or ``concat``), trained by the one trainer on a features folder
(``data.name=keyframe_features``, ``data.data_dir`` = the folder ``python -m echojax.features`` writes).
``get_study(arg)`` is what ``echojax.keyframe_study`` reads: how the features are extracted, and which heads,
frames and Gaussian process make the tables.

Variants: full (ResNet50 at 112 px; ImageNet weights from a local file: ``weights=PATH``), ``demo`` (CPU minutes:
ResNet50 at 112 px, random init, because no weights can be downloaded here: the demo measures the pipeline, not
ImageNet transfer), ``smoke`` (seconds: ResNet18 at 28 px, a few steps).
The classifier's class 1 is EF < 40 (the ef_classification task's convention); the publication's "<= 40" differs
only for an EF of exactly 40.0.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

from echojax.config import parse_arg
from echojax.errors import UserError

HEADS = ("cls", "reg")
FRAMES = ("ed", "es", "mid", "concat")


def _args(arg):
  a = parse_arg(arg, smoke=False, demo=False, head="reg", frame="es", features="", data_dir="", weights="",
                hidden=256, dropout=0.5, lr=1e-3, steps=0, synthetic_num=0)
  if a.head not in HEADS:
    raise UserError(f"keyframe_lvef: head={a.head!r}; use one of {', '.join(HEADS)}")
  if a.frame not in FRAMES:
    raise UserError(f"keyframe_lvef: frame={a.frame!r}; use one of {', '.join(FRAMES)}")
  return a


def variant(a) -> str:
  return "smoke" if a.smoke else "demo" if a.demo else "full"


def study_dir(a) -> Path:
  """Where the study writes (features, runs, tables): workdirs/keyframe_lvef[_demo|_smoke]."""
  v = variant(a)
  return Path("workdirs") / ("keyframe_lvef" if v == "full" else f"keyframe_lvef_{v}")


def get_study(arg: str | None = None) -> dict:
  """The study: feature extraction settings, the heads x frames to train, the GP and the bootstrap size."""
  a = _args(arg)
  v = variant(a)
  backbone, size, kwargs = ("resnet18", 28, {}) if v == "smoke" else ("resnet50", 112, {})
  num = a.synthetic_num or {"smoke": 40, "demo": 400, "full": None}[v]
  data = {"name": "echonet_dynamic", "data_dir": a.data_dir, "builder_config": "112",
          "synthetic_num": None if a.data_dir else num, "synthetic_seed": 0}
  return {
      "out": study_dir(a),
      "features": {"data": data, "backbone": backbone, "backbone_kwargs": kwargs, "weights": a.weights or None,
                   "size": size, "norm": "imagenet" if a.weights else "dataset", "shard_size": 256},
      "frames": ("ed", "es", "mid"),
      "heads": HEADS,
      "gp": {"n_components": 8 if v == "smoke" else 64, "hyper_rows": 2000},
      "bootstrap": 200 if v == "smoke" else 1000,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = _args(arg)
  v = variant(a)
  c = ml_collections.ConfigDict()
  if a.head == "cls":
    c.task = ml_collections.ConfigDict({"kind": "ef_classification", "target_key": "ef", "threshold": 40.0,
                                        "class_weights": "balanced", "thresholds": [35.0, 40.0, 45.0, 50.0]})
    best = ("auroc", "max")
  else:
    c.task = ml_collections.ConfigDict({"kind": "ef_regression", "target_key": "ef"})
    best = ("mae", "min")
  features = a.features or str(study_dir(a) / "features")
  c.data = ml_collections.ConfigDict({"name": "keyframe_features", "data_dir": features, "feature_frame": a.frame,
                                      "input_key": "features", "batch_size": 8 if v == "smoke" else 32})
  c.model = ml_collections.ConfigDict({"name": "feature_mlp", "kwargs": {
      "hidden": (a.hidden,) if v != "smoke" else (16,), "dropout": a.dropout, "batch_norm": True}})
  c.optim = ml_collections.ConfigDict({"name": "adamw", "lr": a.lr, "weight_decay": 1e-4, "schedule": "cosine",
                                       "warmup_steps": 0 if v == "smoke" else 20, "grad_clip": 1.0})
  steps = a.steps or {"smoke": 6, "demo": 600, "full": 0}[v]
  c.train = ml_collections.ConfigDict({"num_steps": steps, "num_epochs": 0.0 if steps else 100.0,
                                       "log_every": 2 if v == "smoke" else 50,
                                       "checkpoint_every": 3 if v == "smoke" else 200})
  c.eval = ml_collections.ConfigDict({"best_metric": best[0], "best_mode": best[1]})
  c.evals = {"val": {"every_steps": 3 if v == "smoke" else 50, "pick_best": True}}
  return c
