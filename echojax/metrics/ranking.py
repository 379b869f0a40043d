"""Ranking metrics of a binary score: AUROC, average precision (AUPRC), ROC and precision-recall curves.

Thin wrappers over scikit-learn that check their inputs (UserError naming the argument) and return NaN, instead
of raising or warning, where a split has only one class. scikit-learn is imported inside the functions so that
``import echojax.metrics`` stays cheap.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from echojax.errors import UserError
from echojax.metrics._checks import _binary_labels, _same_length, _vector


def _labels_and_score(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
  y = _binary_labels(y_true, "y_true")
  s = _vector(score, "score")
  _same_length(y, s, "y_true", "score")
  return y, s


def _both_classes(y: np.ndarray) -> bool:
  return 0 < int(y.sum()) < y.size


def auroc(y_true: Any, score: Any) -> float:
  """Area under the ROC curve (higher ``score`` = more likely positive; ties count one half); NaN when only one
  class is present. scikit-learn's ``roc_auc_score``."""
  from sklearn.metrics import roc_auc_score

  y, s = _labels_and_score(y_true, score)
  return float(roc_auc_score(y, s)) if _both_classes(y) else float("nan")


def average_precision(y_true: Any, score: Any) -> float:
  """AUPRC as average precision, sum over thresholds of (R_k - R_{k-1}) * P_k (scikit-learn's
  ``average_precision_score``, not the optimistic trapezoidal area). NaN when only one class is present."""
  from sklearn.metrics import average_precision_score

  y, s = _labels_and_score(y_true, score)
  return float(average_precision_score(y, s)) if _both_classes(y) else float("nan")


def roc_curve(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ROC points ``(fpr, tpr, thresholds)`` at every distinct score, starting at (0, 0) with thresholds[0] = +inf
  (scikit-learn's ``roc_curve`` with ``drop_intermediate=False``). NaN rates when a class is missing."""
  from sklearn.metrics import roc_curve as sk_roc_curve

  y, s = _labels_and_score(y_true, score)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # one class: scikit-learn warns and returns NaN rates, which we keep
    fpr, tpr, thresholds = sk_roc_curve(y, s, drop_intermediate=False)
  return fpr, tpr, thresholds


def precision_recall_curve(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PR points ``(precision, recall, thresholds)`` by decreasing threshold, so recall rises from 0.

  These are scikit-learn's ``precision_recall_curve`` points in reverse order: the first is (precision 1,
  recall 0), given threshold +inf here. Without positive examples the other recalls are NaN (scikit-learn sets
  them to 1).
  """
  from sklearn.metrics import precision_recall_curve as sk_pr_curve

  y, s = _labels_and_score(y_true, score)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # no positives: replaced by NaN below
    precision, recall, thresholds = sk_pr_curve(y, s, drop_intermediate=False)
  if not y.any():
    recall = np.r_[np.full(recall.size - 1, np.nan), 0.0]
  return precision[::-1], recall[::-1], np.r_[np.inf, thresholds[::-1]]


def permutation_test_auroc(y_true: Any, score: Any, *, permutations: int = 10000, seed: int = 0) -> dict[str, Any]:
  """One-sided permutation test of the AUROC against no association: the labels are shuffled ``permutations``
  times over the fixed scores (vectorised: the AUROC from the scores' ranks, ties as one half, so each shuffle
  costs one gather). ``p = (1 + #{AUROC_perm >= AUROC}) / (1 + permutations)`` (never 0). For out-of-fold scores
  of a cross-validation this tests the pooled predictions, not the training procedure (whose test would retrain
  every fold for every shuffle). Returns auroc, p_value, permutations, null_mean, null_p95, notes."""
  from scipy.stats import rankdata

  y, s = _labels_and_score(y_true, score)
  if permutations < 1:
    raise UserError(f"permutations={permutations} must be >= 1")
  notes: list[str] = []
  if not _both_classes(y):
    notes.append("AUROC is undefined with one class; no permutation test")
    return {"auroc": float("nan"), "p_value": float("nan"), "permutations": int(permutations),
            "null_mean": float("nan"), "null_p95": float("nan"), "notes": notes}
  ranks = rankdata(s)  # average ranks: ties count one half
  n, n_pos = y.size, int(y.sum())
  n_neg = n - n_pos

  def auc_from_positions(pos_mask):
    return (ranks @ pos_mask.T - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

  observed = float(auc_from_positions(y.astype(np.float64)[None])[0])
  rng = np.random.default_rng(seed)
  null = np.empty(permutations)
  for start in range(0, permutations, 1000):  # 1000 shuffles at a time: (1000, n) floats
    m = min(1000, permutations - start)
    order = np.argsort(rng.random((m, n)), axis=1)
    mask = np.zeros((m, n))
    np.put_along_axis(mask, order[:, :n_pos], 1.0, axis=1)
    null[start:start + m] = auc_from_positions(mask)
  p = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
  return {"auroc": observed, "p_value": float(p), "permutations": int(permutations),
          "null_mean": float(null.mean()), "null_p95": float(np.quantile(null, 0.95)), "notes": notes}
