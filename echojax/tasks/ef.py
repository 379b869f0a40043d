"""Ejection-fraction tasks on echo videos: EF regression (MSE) and EF classification (EF < 50 vs >= 50).

Both read the batch key ``ef`` (float, percent). Following the project's metrics convention the POSITIVE class
is reduced EF. Host-side metrics include, for both tasks, reduced-EF detection at ``config.task.thresholds``
(35, 40, 45, 50) via ``echojax.metrics.ef_threshold_metrics``: the regression model's score is its predicted EF,
the classifier's is its probability of EF < ``threshold`` (a single head ranked against every cut-off).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from echojax import losses
from echojax import metrics as M
from echojax.tasks.base import Task, find_head_bias, set_leaf
from echojax.tasks.classification import ClassificationTask

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (35.0, 40.0, 45.0, 50.0)


def _merge(base: dict, extra: dict) -> dict:
  """Merges metrics dicts, concatenating their ``notes``."""
  out = dict(base)
  notes = list(base.get("notes", [])) + list(extra.get("notes", []))
  out.update({k: v for k, v in extra.items() if k != "notes"})
  out["notes"] = notes
  return out


class EFRegressionTask(Task):
  """``config.task``: target_key ("ef"), output_bias (None = train-split mean), thresholds."""

  best_metric = "mae"
  best_mode = "min"

  def __init__(self, cfg):
    super().__init__(cfg)
    self.key = cfg.get("target_key", "ef")
    self.target_keys = (self.key,)
    self.bias = cfg.get("output_bias", None)

  @property
  def num_outputs(self) -> int:
    return 1

  def needs_train_targets(self) -> bool:
    return self.bias is None

  def prepare(self, train_targets):
    if self.bias is None:
      self.bias = float(np.mean(train_targets[self.key]))
      log.info("output bias initialised to the train-split mean %s = %.3f", self.key, self.bias)

  def prepared_constants(self):
    return {"output_bias": None if self.bias is None else float(self.bias)}

  def init_params(self, params):
    if self.bias is None:
      return params
    path = find_head_bias(params, 1)
    return set_leaf(params, path, jnp.full((1,), self.bias, jnp.float32))

  def loss(self, outputs, batch):
    pred = outputs.reshape(outputs.shape[0])
    w = batch.get("valid")
    return losses.mean_squared_error(pred, batch[self.key], weight=w), {
        "mae": losses.mean_absolute_error(pred, batch[self.key], weight=w)}

  def decode(self, outputs):
    return {self.key: outputs.reshape(outputs.shape[0]).astype(jnp.float32)}

  def metrics(self, preds, targets, *, bootstrap: int = 0):
    y, yhat = np.asarray(targets[self.key], np.float64), np.asarray(preds[self.key], np.float64)
    thresholds = tuple(self.cfg.get("thresholds", DEFAULT_THRESHOLDS))
    out = _merge(M.regression_metrics(y, yhat, bootstrap=bootstrap),
                 M.ef_threshold_metrics(y, yhat, thresholds, score_is_ef=True, bootstrap=bootstrap))
    if self.bias is not None and len(y):  # the baseline a model must beat: always predict the train-split mean
      out["mae_train_mean_baseline"] = float(np.mean(np.abs(y - self.bias)))
      out["mae_ratio_to_baseline"] = float(out["mae"] / max(out["mae_train_mean_baseline"], 1e-9))
    return out

  def csv_columns(self, preds, targets):
    return {"target": np.asarray(targets[self.key]), "prediction": np.asarray(preds[self.key])}

  def plots(self, preds, targets, metrics, out_dir):
    from echojax import plots as P

    y, yhat, out = np.asarray(targets[self.key]), np.asarray(preds[self.key]), Path(out_dir)
    return [P.plot_ef_scatter(y, yhat, out / "ef_scatter.png"), P.plot_bland_altman(y, yhat, out / "bland_altman.png")]


class EFClassificationTask(ClassificationTask):
  """Binary reduced EF: class 1 = EF < ``config.task.threshold`` (50), class 0 = EF >= threshold.
  ``class_weights="balanced"`` weights the loss by inverse train-split class frequency (the "weighted" cells of
  the published table)."""

  best_metric = "auroc"
  best_mode = "max"

  def __init__(self, cfg):
    self.threshold = float(cfg.get("threshold", 50.0))
    self.key = cfg.get("target_key", "ef")
    super().__init__(cfg)
    self.target_keys = (self.key,)
    t = f"{self.threshold:g}"
    self.class_names = [f"EF>={t}", f"EF<{t}"]

  @property
  def num_outputs(self) -> int:
    return 2

  def train_labels(self, train_targets):
    return (np.asarray(train_targets[self.key]) < self.threshold).astype(np.int64)

  def labels(self, batch):
    return (batch[self.key] < self.threshold).astype(jnp.int32)

  def host_labels(self, targets):
    return (np.asarray(targets[self.key]) < self.threshold).astype(int)

  def metrics(self, preds, targets, *, bootstrap: int = 0) -> dict[str, Any]:
    probs = np.asarray(preds["probs"])
    labels = self.host_labels(targets)
    out = _merge(M.binary_metrics(labels, probs[:, 1], bootstrap=bootstrap),
                 M.ef_threshold_metrics(targets[self.key], probs[:, 1],
                                        tuple(self.cfg.get("thresholds", DEFAULT_THRESHOLDS)), score_is_ef=False,
                                        bootstrap=bootstrap))
    out["confusion_matrix"] = M.classification_metrics(labels, probs, self.class_names)["confusion_matrix"]
    out["class_names"] = self.class_names
    return out

  def csv_columns(self, preds, targets):
    cols = super().csv_columns(preds, targets)
    cols["ef"] = np.asarray(targets[self.key])
    return cols


__all__ = ["EFRegressionTask", "EFClassificationTask"]
