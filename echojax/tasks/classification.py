"""Multi-class classification: softmax cross-entropy with optional class weights and label smoothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from echojax import losses
from echojax import metrics as M
from echojax.tasks.base import Task

log = logging.getLogger(__name__)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """n / (C * count_c) per class (sklearn's "balanced"); classes absent from train get weight 0."""
  counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
  w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
  return w.astype(np.float32)


class ClassificationTask(Task):
  """``config.task``: num_classes, class_names, label_key ("label"), class_weights (None | "balanced" | list),
  label_smoothing (0.0)."""

  best_metric = "accuracy"
  best_mode = "max"

  def __init__(self, cfg):
    super().__init__(cfg)
    self.label_key = cfg.get("label_key", "label")
    self.target_keys = (self.label_key,)
    self.class_names = list(cfg.get("class_names", None) or [str(i) for i in range(self.num_outputs)])
    cw = cfg.get("class_weights", None)
    self.class_weights = None if cw in (None, "balanced") else np.asarray(cw, np.float32)

  @property
  def num_outputs(self) -> int:
    return int(self.cfg.num_classes)

  def needs_train_targets(self) -> bool:
    return self.cfg.get("class_weights", None) == "balanced"

  def train_labels(self, train_targets: dict[str, np.ndarray]) -> np.ndarray:
    return train_targets[self.label_key]

  def prepare(self, train_targets):
    if self.needs_train_targets():
      self.class_weights = balanced_class_weights(self.train_labels(train_targets), self.num_outputs)
      log.info("class weights from train-split frequencies: %s",
               dict(zip(self.class_names, np.round(self.class_weights, 3).tolist())))

  def prepared_constants(self):
    return {"class_weights": None if self.class_weights is None else [float(w) for w in self.class_weights]}

  def labels(self, batch):
    return batch[self.label_key]

  def loss(self, outputs, batch):
    labels = self.labels(batch)
    weight = batch.get("valid")
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
