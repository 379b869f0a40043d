"""Single-label multi-class classification metrics from integer labels and softmax probabilities."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from echojax.errors import UserError
from echojax.metrics._checks import _check_bootstrap_args, _same_length, _vector
from echojax.metrics.bootstrap import _add_ci, _bootstrap_classification, _bootstrap_ranking
from echojax.metrics.ranking import auroc, average_precision


def classification_metrics(labels: Any, probs: Any, class_names: Sequence[str] | None = None, *,
                           bootstrap: int = 0, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
  """Single-label multi-class metrics from integer labels (N,) and softmax probabilities (N, C).

  With ``bootstrap`` > 0, percentile-bootstrap ``ci`` intervals are added for accuracy, micro_f1 (the same
  numbers), macro_f1, balanced_accuracy and macro precision / recall / specificity as ``<name>_ci_low`` /
  ``<name>_ci_high``, and inside ``per_class`` for each class's precision, recall, F1 and (classes with examples
  of both kinds) one-vs-rest AUROC / AUPRC.

  Keys: accuracy, balanced_accuracy, micro_f1, macro_f1, weighted_f1, macro_precision, macro_recall, macro_specificity,
  auroc_macro_ovr, auprc_macro_ovr, log_loss, top2_accuracy (C > 2), confusion_matrix (list of lists, rows = true
  class, columns = predicted class, in ``class_names`` order), per_class ``{name: {precision, recall, f1,
  specificity, support, auroc, auprc}}``, class_names, n, notes.

  Macro averages run over the classes present in the labels or the predictions (scikit-learn's default); a class
  in neither gets NaN per-class values and a note. One-vs-rest AUROC/AUPRC average over the classes that have both
  positive and negative examples; the others are NaN per class, listed in a note. Among exactly tied
  probabilities the predicted class is the first (np.argmax), while top-2 accuracy (scikit-learn's
  ``top_k_accuracy_score``) prefers the higher class index.
  """
  from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, log_loss,
                               precision_recall_fscore_support, top_k_accuracy_score)

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
  classes = np.arange(num_classes)
  cm = confusion_matrix(y, pred, labels=classes)
  support, predicted = cm.sum(axis=1), cm.sum(axis=0)
  seen = (support > 0) | (predicted > 0)
  # per class; 0 where a denominator is 0 (zero_division=0), as inside scikit-learn's macro averages
  precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
  negatives = n - support  # of each one-vs-rest problem; specificity = TN / (TN + FP)
  with np.errstate(divide="ignore", invalid="ignore"):
    specificity = np.where(negatives > 0, (negatives - predicted + np.diag(cm)) / negatives, np.nan)
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
  # Macro averages over the classes in the labels or the predictions (scikit-learn's labels=None).
  macro_precision, macro_recall, macro_f1, _ = precision_recall_fscore_support(y, pred, average="macro",
                                                                               zero_division=0)
  finite_auc = np.isfinite(aurocs)
  with warnings.catch_warnings():
    # balanced accuracy warns when a predicted class has no examples (noted above); log_loss warns when rows sum
    # to 1 only within the float32 tolerance checked above
    warnings.simplefilter("ignore")
    balanced_accuracy = float(balanced_accuracy_score(y, pred))
    loss = float(log_loss(y, np.minimum(p, 1.0), labels=classes))  # it rejects a 1 + rounding error
  accuracy = float(accuracy_score(y, pred))
  out: dict[str, Any] = {
      "accuracy": accuracy,
      "balanced_accuracy": balanced_accuracy,
      "micro_f1": accuracy,  # single-label: micro P = micro R = micro F1 = accuracy
      "macro_f1": float(macro_f1),
      "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
      "macro_precision": float(macro_precision),
      "macro_recall": float(macro_recall),
      # over the same classes as the macro precision (those in the labels or predicted) that have negatives
      "macro_specificity": _nanmean(specificity[seen]),
      "auroc_macro_ovr": float(np.mean(aurocs[finite_auc])) if finite_auc.any() else float("nan"),
      "auprc_macro_ovr": float(np.mean(auprcs[finite_auc])) if finite_auc.any() else float("nan"),
      "log_loss": loss,
  }
  if num_classes > 2:
    out["top2_accuracy"] = float(top_k_accuracy_score(y, p, k=2, labels=classes))
  _check_bootstrap_args(bootstrap, ci)
  if bootstrap:
    boot = _bootstrap_classification(y, pred, num_classes, bootstrap, seed)
    for name in ("accuracy", "macro_f1", "balanced_accuracy", "macro_precision", "macro_recall", "macro_specificity"):
      _add_ci(out, name, boot[name], ci, notes)
    out["micro_f1_ci_low"], out["micro_f1_ci_high"] = out["accuracy_ci_low"], out["accuracy_ci_high"]
    for i, name in enumerate(class_names):
      for key in ("precision", "recall", "f1"):
        _add_ci(per_class[name], key, boot[f"class_{key}"][:, i], ci, notes, f"class {name}: ")
      if 0 < support[i] < n:
        ranking = _bootstrap_ranking(y == i, p[:, i], bootstrap, seed)
        for key in ("auroc", "auprc"):
          _add_ci(per_class[name], key, ranking[key], ci, notes, f"class {name}: ")
  out.update({
      "confusion_matrix": cm.tolist(),
      "per_class": per_class,
      "class_names": list(class_names),
      "n": int(n),
      "notes": notes,
  })
  return out


def _nanmean(v: np.ndarray) -> float:
  v = np.asarray(v, np.float64)
  v = v[np.isfinite(v)]
  return float(v.mean()) if len(v) else float("nan")
