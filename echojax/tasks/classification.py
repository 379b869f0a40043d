"""Multi-class classification: softmax cross-entropy (optional class weights, label smoothing) or focal loss."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from echojax import losses
from echojax import metrics as M
from echojax.errors import UserError
from echojax.tasks.base import Task

log = logging.getLogger(__name__)

LOSSES = ("cross_entropy", "focal")


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """n / (C * count_c) per class (sklearn's "balanced"); classes absent from train get weight 0."""
  counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
  w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
  return w.astype(np.float32)


class ClassificationTask(Task):
  """``config.task``: num_classes, class_names, label_key ("label"), loss ("cross_entropy" | "focal"),
  class_weights (None | "balanced" | list; cross-entropy), label_smoothing (0.0; cross-entropy), focal_gamma (2.0)
  and focal_alpha (None | "balanced" | a number for every class | a list per class; focal)."""

  best_metric = "accuracy"
  best_mode = "max"

  def __init__(self, cfg):
    super().__init__(cfg)
    self.label_key = cfg.get("label_key", "label")
    self.target_keys = (self.label_key,)
    self.class_names = list(cfg.get("class_names", None) or [str(i) for i in range(self.num_outputs)])
    cw = cfg.get("class_weights", None)
    self.class_weights = None if cw in (None, "balanced") else np.asarray(cw, np.float32)
    self.loss_name = cfg.get("loss", "cross_entropy")
    if self.loss_name not in LOSSES:
      raise UserError(f"config.task.loss={self.loss_name!r} is unknown; use one of {', '.join(LOSSES)}")
    self.gamma = float(cfg.get("focal_gamma", 2.0))
    fa = cfg.get("focal_alpha", None)
    if self.loss_name == "focal":
      if cw is not None or float(cfg.get("label_smoothing", 0.0) or 0.0):
        raise UserError("config.task.class_weights / label_smoothing apply to loss='cross_entropy'; with "
                        "loss='focal' weight the classes with config.task.focal_alpha")
      if self.gamma < 0:
        raise UserError(f"config.task.focal_gamma must be >= 0; got {self.gamma}")
    self.focal_alpha = None
    if self.loss_name == "focal" and fa is not None and fa != "balanced":
      alpha = np.broadcast_to(np.asarray(fa, np.float32), (self.num_outputs,)) if np.ndim(fa) == 0 else \
          np.asarray(fa, np.float32)
      if alpha.shape != (self.num_outputs,) or (alpha < 0).any():
        raise UserError(f"config.task.focal_alpha must be one non-negative number or {self.num_outputs} of them (one "
                        f"per class); got {fa!r}")
      self.focal_alpha = alpha

  @property
  def num_outputs(self) -> int:
    return int(self.cfg.num_classes)

  def needs_train_targets(self) -> bool:
    balanced_alpha = self.loss_name == "focal" and self.cfg.get("focal_alpha", None) == "balanced"
    return self.cfg.get("class_weights", None) == "balanced" or balanced_alpha

  def train_labels(self, train_targets: dict[str, np.ndarray]) -> np.ndarray:
    return train_targets[self.label_key]

  def prepare(self, train_targets):
    if self.needs_train_targets():
      w = balanced_class_weights(self.train_labels(train_targets), self.num_outputs)
      if self.loss_name == "focal":
        self.focal_alpha = w
      else:
        self.class_weights = w
      log.info("%s from train-split frequencies: %s", "focal alpha" if self.loss_name == "focal" else "class weights",
               dict(zip(self.class_names, np.round(w, 3).tolist())))

  def prepared_constants(self):
    out = {"class_weights": None if self.class_weights is None else [float(w) for w in self.class_weights]}
    if self.loss_name == "focal":
      out["focal_alpha"] = None if self.focal_alpha is None else [float(w) for w in self.focal_alpha]
    return out

  def labels(self, batch):
    return batch[self.label_key]

  def loss(self, outputs, batch):
    labels = self.labels(batch)
    weight = batch.get("valid")
    if self.loss_name == "focal":
      alpha = None if self.focal_alpha is None else jnp.asarray(self.focal_alpha)
      loss = losses.softmax_focal_loss(outputs, labels, gamma=self.gamma, alpha=alpha, weight=weight)
    else:
      cw = None if self.class_weights is None else jnp.asarray(self.class_weights)
      loss = losses.softmax_cross_entropy(outputs, labels, weight=weight, class_weights=cw,
                                          label_smoothing=float(self.cfg.get("label_smoothing", 0.0)))
    return loss, {"accuracy": losses.accuracy(outputs, labels, weight=weight)}

  def decode(self, outputs):
    return {"probs": jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)}

  def host_labels(self, targets: dict[str, np.ndarray]) -> np.ndarray:
    return np.rint(np.asarray(targets[self.label_key])).astype(int)

  def metrics(self, preds, targets, *, bootstrap: int = 0) -> dict[str, Any]:
    return dict(M.classification_metrics(self.host_labels(targets), preds["probs"], self.class_names,
                                         bootstrap=bootstrap))

  def csv_columns(self, preds, targets):
    probs = np.asarray(preds["probs"])
    cols = {"target": self.host_labels(targets), "prediction": probs.argmax(-1)}
    for i, name in enumerate(self.class_names):
      cols[f"prob_{name}"] = probs[:, i]
    return cols

  def plots(self, preds, targets, metrics, out_dir: Path) -> list[Path]:
    from echojax import plots as P

    labels, probs = self.host_labels(targets), np.asarray(preds["probs"])
    scores = probs[:, 1] if probs.shape[1] == 2 else probs  # binary: score of class 1
    out = Path(out_dir)
    cm = metrics.get("confusion_matrix") or M.classification_metrics(labels, probs, self.class_names)[
        "confusion_matrix"]
    return [P.plot_confusion_matrix(np.asarray(cm), self.class_names, out / "confusion_matrix.png"),
            P.plot_roc_curve(labels, scores, out / "roc.png", class_names=self.class_names),
            P.plot_pr_curve(labels, scores, out / "pr.png", class_names=self.class_names)]
