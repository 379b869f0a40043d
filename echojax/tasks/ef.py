"""Ejection-fraction tasks on echo videos: EF regression (MSE) and EF classification (EF >= 50 vs below).

Both read the batch key ``ef`` (float, percent). Host-side metrics include, for both tasks, AUROC / AUPRC /
accuracy / F1 of "EF >= t" for t in ``config.task.thresholds`` (35, 40, 45, 50): the regression model's score is
``sigmoid((pred - t) / 10)`` (monotone in the predicted EF; 0.5 exactly at the cut-off), the classifier's is its
probability of EF >= ``threshold``.
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from echojax import losses
from echojax.tasks.base import Task, find_head_bias, set_leaf
from echojax.tasks.classification import (ClassificationTask, balanced_class_weights, call_plots,
                                          get_metrics_module, get_plots_module)

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (35.0, 40.0, 45.0, 50.0)


def _threshold_metrics(M, ef: np.ndarray, score_fn, thresholds) -> dict[str, Any]:
  out = {}
  for t in thresholds:
    y = (np.asarray(ef) >= t).astype(int)
    for k, v in M.binary_metrics(y, score_fn(t)).items():
      out[f"ef>={t:g}/{k}"] = v
  return out


class EFRegressionTask(Task):
  """``config.task``: target_key ("ef"), output_bias (None = train-split mean), thresholds, bootstrap."""

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

  def predict(self, outputs):
    return {self.key: outputs.reshape(outputs.shape[0]).astype(jnp.float32)}

  def metrics(self, preds, targets, *, bootstrap: int = 0):
    M = get_metrics_module()
    y, yhat = np.asarray(targets[self.key], np.float64), np.asarray(preds[self.key], np.float64)
    out = dict(M.regression_metrics(y, yhat, bootstrap=bootstrap))
    thresholds = self.cfg.get("thresholds", DEFAULT_THRESHOLDS)
    out.update(_threshold_metrics(M, y, lambda t: 1.0 / (1.0 + np.exp(-(yhat - t) / 10.0)), thresholds))
    return out

  def csv_columns(self, preds, targets):
    return {"target": np.asarray(targets[self.key]), "prediction": np.asarray(preds[self.key])}

  def plots(self, preds, targets, out_dir):
    P = get_plots_module()
    if P is None:
      log.warning("echojax.plots is not available; no plots written")
      return []
    y, yhat = np.asarray(targets[self.key]), np.asarray(preds[self.key])
    return call_plots(P, out_dir, [("ef_scatter", "plot_ef_scatter", (y, yhat)),
                                   ("bland_altman", "plot_bland_altman", (y, yhat))])


class EFClassificationTask(ClassificationTask):
  """Binary EF >= ``config.task.threshold`` (50). ``class_weights="balanced"`` weights the loss by inverse
  train-split class frequency (the "weighted" cells of the published table)."""

  best_metric = "auroc"
  best_mode = "max"

  def __init__(self, cfg):
    self.threshold = float(cfg.get("threshold", 50.0))
    self.key = cfg.get("target_key", "ef")
    super().__init__(cfg)
    self.target_keys = (self.key,)
    t = f"{self.threshold:g}"
    self.class_names = [f"EF<{t}", f"EF>={t}"]

  @property
  def num_outputs(self) -> int:
    return 2

  def train_labels(self, train_targets):
    return (np.asarray(train_targets[self.key]) >= self.threshold).astype(np.int64)

  def labels(self, batch):
    return (batch[self.key] >= self.threshold).astype(jnp.int32)

  def host_labels(self, targets):
    return (np.asarray(targets[self.key]) >= self.threshold).astype(int)

  def metrics(self, preds, targets, *, bootstrap: int = 0):
    M = get_metrics_module()
    probs = np.asarray(preds["probs"])
    out = dict(M.binary_metrics(self.host_labels(targets), probs[:, 1]))
    out.update(_threshold_metrics(M, targets[self.key], lambda t: probs[:, 1],
                                  self.cfg.get("thresholds", DEFAULT_THRESHOLDS)))
    cm = M.classification_metrics(self.host_labels(targets), probs, self.class_names)
    out.update({f"cls/{k}": v for k, v in cm.items()})
    return out

  def csv_columns(self, preds, targets):
    cols = super().csv_columns(preds, targets)
    cols["ef"] = np.asarray(targets[self.key])
    return cols


__all__ = ["EFRegressionTask", "EFClassificationTask", "balanced_class_weights"]
