"""Ranking metrics of a binary score: AUROC, average precision (AUPRC), ROC and precision-recall curves."""

from __future__ import annotations

from typing import Any

import numpy as np

from echojax.metrics._checks import _binary_labels, _same_length, _vector


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks of ``x`` with ties given their average rank (as scipy.stats.rankdata(method='average'))."""
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)
  avg = ends - (counts - 1) / 2.0
  return avg[inverse.reshape(-1)]


def auroc(y_true: Any, score: Any) -> float:
  """Area under the ROC curve (higher ``score`` = more likely positive); NaN when only one class is present.

  Computed as the Mann-Whitney U statistic with tie-averaged ranks, which equals the trapezoidal ROC area.
  """
  y = _binary_labels(y_true, "y_true")
  s = _vector(score, "score")
  _same_length(y, s, "y_true", "score")
  n_pos = int(y.sum())
  n_neg = y.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  ranks = _average_ranks(s)
  return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _curve_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Cumulative true/false positives at each distinct score threshold, highest threshold first."""
  order = np.argsort(-s, kind="mergesort")
  s_sorted = s[order]
  y_sorted = y[order]
  last_of_group = np.r_[np.nonzero(np.diff(s_sorted))[0], y_sorted.size - 1]
  tps = np.cumsum(y_sorted)[last_of_group]
  fps = (last_of_group + 1) - tps
  return tps.astype(np.float64), fps.astype(np.float64), s_sorted[last_of_group]


def roc_curve(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ROC points ``(fpr, tpr, thresholds)`` starting at (0, 0); thresholds[0] is +inf. NaN rates for one class."""
  y = _binary_labels(y_true, "y_true")
  s = _vector(score, "score")
  _same_length(y, s, "y_true", "score")
  tps, fps, thr = _curve_counts(y, s)
  tps = np.r_[0.0, tps]
  fps = np.r_[0.0, fps]
  n_pos, n_neg = tps[-1], fps[-1]
  fpr = fps / n_neg if n_neg else np.full_like(fps, np.nan)
  tpr = tps / n_pos if n_pos else np.full_like(tps, np.nan)
  return fpr, tpr, np.r_[np.inf, thr]


def precision_recall_curve(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PR points ``(precision, recall, thresholds)`` by decreasing threshold, so recall rises from 0.

  The first point is (precision 1, recall 0) at threshold +inf (scikit-learn returns the same points reversed).
  """
  y = _binary_labels(y_true, "y_true")
  s = _vector(score, "score")
  _same_length(y, s, "y_true", "score")
  tps, fps, thr = _curve_counts(y, s)
  n_pos = tps[-1]
  precision = tps / (tps + fps)
  recall = tps / n_pos if n_pos else np.full_like(tps, np.nan)
  return np.r_[1.0, precision], np.r_[0.0, recall], np.r_[np.inf, thr]


def average_precision(y_true: Any, score: Any) -> float:
  """AUPRC as average precision: sum over thresholds of (R_k - R_{k-1}) * P_k. NaN when one class is present."""
  y = _binary_labels(y_true, "y_true")
  s = _vector(score, "score")
  _same_length(y, s, "y_true", "score")
  n_pos = int(y.sum())
  if n_pos == 0 or n_pos == y.size:
    return float("nan")
  tps, fps, _ = _curve_counts(y, s)
  precision = tps / (tps + fps)
  recall = tps / n_pos
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
