"""Single-label multi-class classification metrics from integer labels and softmax probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from echojax.errors import UserError
from echojax.metrics._checks import _check_bootstrap_args, _same_length, _vector
from echojax.metrics.bootstrap import _add_ci, _bootstrap_classification
from echojax.metrics.ranking import auroc, average_precision


def classification_metrics(labels: Any, probs: Any, class_names: Sequence[str] | None = None, *,
                           bootstrap: int = 0, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
  """Single-label multi-class metrics from integer labels (N,) and softmax probabilities (N, C).

  With ``bootstrap`` > 0, percentile-bootstrap ``ci`` intervals are added for accuracy, micro_f1 (the same
  numbers), macro_f1 and balanced_accuracy as ``<name>_ci_low`` / ``<name>_ci_high``.

  Keys: accuracy, balanced_accuracy, micro_f1, macro_f1, weighted_f1, macro_precision, macro_recall,
  auroc_macro_ovr, auprc_macro_ovr, log_loss, top2_accuracy (C > 2), confusion_matrix (list of lists, rows = true
  class, columns = predicted class, in ``class_names`` order), per_class ``{name: {precision, recall, f1,
  specificity, support, auroc, auprc}}``, class_names, n, notes.

  Macro averages run over the classes present in the labels or the predictions (scikit-learn's default); a class
  in neither gets NaN per-class values and a note. One-vs-rest AUROC/AUPRC average over the classes that have both
  positive and negative examples; the others are NaN per class, listed in a note.
  """
  p = np.asarray(probs, dtype=np.float64)
  if p.ndim != 2:
    raise UserError(f"probs: expected shape (N, num_classes), got {p.shape}")
  num_classes = p.shape[1]
  if class_names is None:
    class_names = [str(i) for i in range(num_classes)]
  class_names = [str(c) for c in class_names]
  if len(class_names) != num_classes:
    raise UserError(f"class_names has {len(class_names)} names but probs has {num_classes} columns; give one "
                    "name per model output, in output order")
  if len(set(class_names)) != num_classes:
    raise UserError(f"class_names must be unique, got {class_names}")
  y = _vector(labels, "labels")
  _same_length(y, p, "labels", "probs")
  if not np.all(y == np.round(y)) or y.min() < 0 or y.max() >= num_classes:
    raise UserError(f"labels: must be integers in [0, {num_classes}) (indices into class_names), found "
                    f"min {y.min():g}, max {y.max():g}")
  y = y.astype(np.int64)
  if not np.all(np.isfinite(p)):
    raise UserError("probs: contains NaN/inf values; fix the model output before computing metrics")
  row_sums = p.sum(axis=1)
  if p.min() < 0 or np.max(np.abs(row_sums - 1.0)) > 1e-3:
    raise UserError("probs: rows must be probabilities (non-negative, summing to 1); these look like logits. "
                    "Apply softmax first (e.g. scipy.special.softmax(logits, axis=-1))")
  n = y.size
  notes: list[str] = []
  pred = np.argmax(p, axis=1)
  cm = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(cm, (y, pred), 1)
  tp = np.diag(cm).astype(np.float64)
  support = cm.sum(axis=1).astype(np.float64)
  predicted = cm.sum(axis=0).astype(np.float64)
  fp = predicted - tp
  fn = support - tp
  tn = n - tp - fp - fn
  seen = (support > 0) | (predicted > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    specificity = np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)
  unseen = [class_names[i] for i in range(num_classes) if not seen[i]]
  if unseen:
    notes.append(f"classes {unseen} are neither in the labels nor predicted: their per-class values are NaN and "
                 "they are left out of macro averages")
  absent = [class_names[i] for i in range(num_classes) if support[i] == 0 and predicted[i] > 0]
  if absent:
    notes.append(f"classes {absent} have no examples but were predicted: recall and F1 count as 0 in macro "
                 "averages (as scikit-learn)")
  aurocs = np.full(num_classes, np.nan)
  auprcs = np.full(num_classes, np.nan)
  for c in range(num_classes):
    if 0 < support[c] < n:
      aurocs[c] = auroc(y == c, p[:, c])
      auprcs[c] = average_precision(y == c, p[:, c])
  no_auc = [class_names[i] for i in range(num_classes) if not 0 < support[i] < n]
  if no_auc:
    notes.append(f"one-vs-rest AUROC/AUPRC undefined for classes {no_auc} (no positive or no negative examples); "
                 "macro averages use the other classes")
  per_class = {}
  for i, name in enumerate(class_names):
    nan_if_unseen = (lambda v, i=i: float(v) if seen[i] else float("nan"))
    per_class[name] = {
        "precision": nan_if_unseen(precision[i]),
        "recall": nan_if_unseen(recall[i]) if support[i] > 0 else float("nan"),
        "f1": nan_if_unseen(f1[i]),
        "specificity": float(specificity[i]),
        "support": int(support[i]),
        "auroc": float(aurocs[i]),
        "auprc": float(auprcs[i]),
    }

  def macro(values: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(values[mask])) if np.any(mask) else float("nan")

  finite_auc = np.isfinite(aurocs)
  eps = np.finfo(np.float64).eps
  p_true = np.clip(p[np.arange(n), y], eps, 1.0)
  out: dict[str, Any] = {
      "accuracy": float(tp.sum() / n),
      "balanced_accuracy": macro(recall, support > 0),
      "micro_f1": float(tp.sum() / n),  # single-label: micro P = micro R = micro F1 = accuracy
      "macro_f1": macro(f1, seen),
      "weighted_f1": float(np.sum(f1 * support) / n),
      "macro_precision": macro(precision, seen),
      "macro_recall": macro(recall, seen),
      "auroc_macro_ovr": macro(aurocs, finite_auc),
      "auprc_macro_ovr": macro(auprcs, finite_auc),
      "log_loss": float(-np.mean(np.log(p_true))),
  }
  if num_classes > 2:
    top2 = np.argsort(-p, axis=1, kind="stable")[:, :2]
    out["top2_accuracy"] = float(np.mean(np.any(top2 == y[:, None], axis=1)))
  _check_bootstrap_args(bootstrap, ci)
  if bootstrap:
    boot = _bootstrap_classification(y, pred, num_classes, bootstrap, seed)
    for name in ("accuracy", "macro_f1", "balanced_accuracy"):
      _add_ci(out, name, boot[name], ci, notes)
    out["micro_f1_ci_low"], out["micro_f1_ci_high"] = out["accuracy_ci_low"], out["accuracy_ci_high"]
  out.update({
      "confusion_matrix": cm.tolist(),
      "per_class": per_class,
      "class_names": list(class_names),
      "n": int(n),
      "notes": notes,
  })
  return out
