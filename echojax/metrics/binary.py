"""Binary classification metrics from a score (scikit-learn's confusion matrix, precision/recall/F1, balanced
accuracy, AUROC, average precision) and reduced-EF detection at clinical EF cut-offs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from echojax.errors import UserError
from echojax.metrics._checks import _binary_labels, _check_bootstrap_args, _same_length, _vector
from echojax.metrics.bootstrap import _add_ci, _bootstrap_classification, _bootstrap_ranking
from echojax.metrics.ranking import auroc, average_precision


def _binary_from_predictions(y: np.ndarray, pred: np.ndarray, score: np.ndarray, what: str,
                             notes: list[str], bootstrap: int = 0, seed: int = 0,
                             ci: float = 0.95) -> dict[str, float]:
  """Confusion-based and ranking metrics for bool labels ``y``, bool predictions and a ranking score
  (+ bootstrap CIs of accuracy, AUROC and AUPRC when ``bootstrap`` > 0)."""
  from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                               precision_recall_fscore_support)

  tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[False, True]).ravel())
  n_pos, n_neg = tp + fn, tn + fp
  if n_pos == 0 or n_neg == 0:
    missing = "positive" if n_pos == 0 else "negative"
    notes.append(f"{what}: no {missing} examples among {y.size}, so AUROC, AUPRC, balanced accuracy and "
                 f"{'sensitivity/recall' if n_pos == 0 else 'specificity'} are NaN")
  if tp + fp == 0:
    notes.append(f"{what}: nothing was predicted positive, so precision is reported as 0")
  # positive class first: precision = (PPV, NPV), recall = (sensitivity, specificity); NaN where a denominator is 0
  precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=[True, False], zero_division=np.nan)
  out = {
      "accuracy": float(accuracy_score(y, pred)),
      "precision": float(precision[0]) if tp + fp else 0.0,
      "recall": float(recall[0]),
      "sensitivity": float(recall[0]),
      "specificity": float(recall[1]),
      "npv": float(precision[1]),
      "f1": float(f1[0]),
      # scikit-learn averages over the classes present, which is only one of the two rates on a one-class split
      "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if n_pos and n_neg else float("nan"),
      "auroc": auroc(y, score),
      "auprc": average_precision(y, score),
      "tp": tp, "fp": fp, "fn": fn, "tn": tn,
      "n_pos": n_pos, "n_neg": n_neg, "n": int(y.size),
  }
  if bootstrap > 0:
    _add_ci(out, "accuracy", _bootstrap_classification(y.astype(np.int64), np.asarray(pred, np.int64), 2, bootstrap,
                                                       seed)["accuracy"], ci, notes, f"{what}: ")
    boot = _bootstrap_ranking(y, score, bootstrap, seed)
    for name in ("auroc", "auprc"):
      if math.isnan(out[name]):  # one class: the note above already says why
        out[f"{name}_ci_low"] = out[f"{name}_ci_high"] = float("nan")
      else:
        _add_ci(out, name, boot[name], ci, notes, f"{what}: ")
  return out


def binary_metrics(y_true: Any, prob_pos: Any, threshold: float = 0.5, *, bootstrap: int = 0, seed: int = 0,
                   ci: float = 0.95) -> dict[str, Any]:
  """Metrics for a binary task from the positive-class probability (or any score; predicted positive when
  ``prob_pos >= threshold``).

  Keys: accuracy, precision, recall (= sensitivity), specificity, npv, f1, balanced_accuracy, auroc, auprc,
  tp/fp/fn/tn, n_pos, n_neg, n, threshold, notes; with ``bootstrap`` > 0 also
  accuracy_ci_low/high, auroc_ci_low/high and auprc_ci_low/high (percentile bootstrap, vectorised).
  """
  _check_bootstrap_args(bootstrap, ci)
  y = _binary_labels(y_true, "y_true")
  s = _vector(prob_pos, "prob_pos")
  _same_length(y, s, "y_true", "prob_pos")
  notes: list[str] = []
  out: dict[str, Any] = _binary_from_predictions(y, s >= threshold, s, "binary", notes, bootstrap, seed, ci)
  out["threshold"] = float(threshold)
  out["notes"] = notes
  return out


def ef_threshold_metrics(ef_true: Any, score: Any, thresholds: Sequence[float] = (35, 40, 45, 50), *,
                         score_is_ef: bool = True, decision_threshold: float = 0.5, bootstrap: int = 0,
                         seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
  """Reduced-EF detection at clinical cut-offs, from a predicted EF or from a classifier score.

  Convention: for each threshold ``t`` the POSITIVE class is reduced ejection fraction, ``ef_true < t``.

  - ``score_is_ef=True``: ``score`` is the predicted EF (percent, same units as ``ef_true``). An echo is
    predicted positive when ``score < t``; ranking metrics use ``-score`` (lower EF = more likely reduced).
  - ``score_is_ef=False``: ``score`` is a probability/score of REDUCED EF (higher = more likely EF < t). It is
    predicted positive when ``score >= decision_threshold``. If a head outputs P(EF >= t), pass ``1 - p``.

  Returns ``{"ef_lt_35": {auroc, auprc, accuracy, f1, sensitivity, specificity, precision, npv,
  balanced_accuracy, n_pos, n_neg, n, ...}, ..., "notes": [...]}``. A threshold at which the split has only one
  class gets NaN for the undefined metrics and a note, never an exception. ``bootstrap`` > 0 adds
  auroc_ci_low/high and auprc_ci_low/high per threshold.
  """
  _check_bootstrap_args(bootstrap, ci)
  ef = _vector(ef_true, "ef_true")
  s = _vector(score, "score")
  _same_length(ef, s, "ef_true", "score")
  if len(thresholds) == 0:
    raise UserError("thresholds: give at least one EF cut-off, e.g. (35, 40, 45, 50)")
  notes: list[str] = []
  out: dict[str, Any] = {}
  for t in thresholds:
    key = f"ef_lt_{float(t):g}"
    y = ef < t
    if score_is_ef:
      pred, rank_score = s < t, -s
    else:
      pred, rank_score = s >= decision_threshold, s
    out[key] = _binary_from_predictions(y, pred, rank_score, f"EF < {float(t):g}", notes, bootstrap, seed, ci)
    out[key]["threshold"] = float(t)
  out["notes"] = notes
  return out
