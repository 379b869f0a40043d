"""Host-side evaluation metrics for every echojax task (numpy in, plain JSON-able dicts out).

Called by ``echojax.evaluate`` and by each task's ``metrics`` on a whole split, after predictions have been
gathered to the host. Everything here is numpy only (no JAX, no sklearn, no matplotlib), so importing it is cheap
and results are identical on every backend. Values agree with scikit-learn's definitions (tests check this).

Conventions
-----------
- Every function returns a plain ``dict`` of python floats / ints (nested dicts for per-class or per-threshold
  results) plus a ``"notes"`` list of strings saying why any value is NaN. A metric that is undefined on the given
  split (AUROC with one class, recall with no positives, R2 with constant targets, ...) is ``float("nan")`` with
  a note; it never raises. ``json.dump`` writes NaN as ``NaN``; use :func:`json_safe` for strict JSON (null).
- Wrong inputs (mismatched lengths, wrong shapes, NaN/inf values, probabilities that are really logits) raise
  :class:`echojax.errors.UserError` naming the argument and the fix.
- Reduced ejection fraction is the positive class: for a threshold ``t``, an echo is positive when ``EF < t``.
- Precision with no predicted positives is 0.0 (scikit-learn's ``zero_division=0``), with a note.
- AUPRC is average precision (the step-wise area, as scikit-learn's ``average_precision_score``), not the
  trapezoidal area, which is optimistic.
- Cross-validation: :func:`summarize_folds` + :func:`format_mean_std` give "0.812 +- 0.034" (sample std, ddof=1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from echojax.errors import UserError

# Bootstrap resamples are drawn in chunks so that the (chunk, n) index matrix stays below this many entries.
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------


def _vector(x: Any, name: str, *, dtype=np.float64) -> np.ndarray:
  """``x`` as a finite 1-D array; (N, 1) is accepted and flattened. Raises UserError naming ``name``."""
  arr = np.asarray(x)
  if arr.ndim == 2 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim != 1:
    raise UserError(f"{name}: expected a 1-D array of shape (N,), got shape {arr.shape}; flatten or select "
                    "the right column before computing metrics")
  if arr.size == 0:
    raise UserError(f"{name}: is empty; metrics need at least one example (check the split and the `valid` mask)")
  try:
    arr = arr.astype(dtype)
  except (TypeError, ValueError) as e:
    raise UserError(f"{name}: cannot be converted to {np.dtype(dtype).name} numbers ({e})") from None
  if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
    bad = int(np.sum(~np.isfinite(arr)))
    raise UserError(f"{name}: contains {bad} NaN/inf value(s) of {arr.size}; drop those rows (e.g. padded "
                    "examples with valid=False) or fix the model output before computing metrics")
  return arr


def _same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape[0] != b.shape[0]:
    raise UserError(f"{name_a} has {a.shape[0]} examples but {name_b} has {b.shape[0]}; pass one value per "
                    "example in both")


def _binary_labels(y: Any, name: str) -> np.ndarray:
  """0/1 (or bool) labels as a bool vector."""
  arr = _vector(y, name)
  if not np.all((arr == 0) | (arr == 1)):
    bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
    raise UserError(f"{name}: binary labels must be 0/1 or bool, found values like {bad.tolist()}; for more "
                    "than two classes use classification_metrics")
  return arr.astype(bool)


def _div(num: float, den: float) -> float:
  """num / den, NaN when den == 0."""
  return float(num) / float(den) if den else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# Ranking metrics (numpy versions of roc_auc_score / average_precision_score / roc_curve / precision_recall_curve)
# ----------------------------------------------------------------------------------------------------------------


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


def _resample_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
  """(b, n) multiplicities of each example in ``b`` bootstrap resamples of size n (one index matrix draw)."""
  idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
  return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)


def _bootstrap_ranking(y: np.ndarray, s: np.ndarray, num: int, seed: int) -> dict[str, np.ndarray]:
  """AUROC and average precision on ``num`` bootstrap resamples, vectorised.

  The scores are sorted once; a resample is a row of multiplicities, so both metrics become weighted sums over
  tie groups of the sorted scores (ties count one half in AUROC, as in the Mann-Whitney statistic). NaN for a
  resample that lacks one class.
  """
  n = y.size
  order = np.argsort(s, kind="mergesort")
  s_sorted = s[order]
  y_sorted = y[order]
  starts = np.r_[0, np.nonzero(np.diff(s_sorted))[0] + 1]  # tie groups, ascending score
  rng = np.random.default_rng(seed)
  chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
  aurocs, aps = [], []
  done = 0
  while done < num:
    b = min(chunk, num - done)
    w = _resample_counts(rng, n, b)[:, order].astype(np.float64)
    gp = np.add.reduceat(w * y_sorted, starts, axis=1)  # positive weight per tie group
    gn = np.add.reduceat(w * ~y_sorted, starts, axis=1)
    p_tot, n_tot = gp.sum(axis=1), gn.sum(axis=1)
    neg_below = np.cumsum(gn, axis=1) - gn
    u = np.sum(gp * (neg_below + 0.5 * gn), axis=1)
    # average precision: thresholds from the highest score down
    tp = np.cumsum(gp[:, ::-1], axis=1)
    fp = np.cumsum(gn[:, ::-1], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
      prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
      ok = (p_tot > 0) & (n_tot > 0)
      aurocs.append(np.where(ok, u / np.where(ok, p_tot * n_tot, 1.0), np.nan))
      aps.append(np.where(ok, np.sum(gp[:, ::-1] * prec, axis=1) / np.where(ok, p_tot, 1.0), np.nan))
    done += b
  return {"auroc": np.concatenate(aurocs), "auprc": np.concatenate(aps)}


def _add_ci(result: dict[str, Any], name: str, values: np.ndarray, ci: float, notes: list[str],
            what: str = "") -> None:
  """``result[name_ci_low/high]``: percentile interval of the finite bootstrap ``values`` (NaN + note if none)."""
  vals = values[np.isfinite(values)]
  alpha = (1.0 - ci) / 2.0
  if vals.size:
    low, high = np.quantile(vals, [alpha, 1.0 - alpha])
    result[f"{name}_ci_low"], result[f"{name}_ci_high"] = float(low), float(high)
  else:
    result[f"{name}_ci_low"] = result[f"{name}_ci_high"] = float("nan")
    notes.append(f"{what}{name} CI is NaN: no bootstrap resample had a defined {name}")


def _check_bootstrap_args(bootstrap: int, ci: float) -> None:
  if not 0.0 < ci < 1.0:
    raise UserError(f"ci={ci}: the confidence level must be between 0 and 1, e.g. 0.95")
  if bootstrap < 0:
    raise UserError(f"bootstrap={bootstrap}: the number of resamples must be >= 0 (0 turns the CIs off)")


# ----------------------------------------------------------------------------------------------------------------
# Regression
# ----------------------------------------------------------------------------------------------------------------


def _bootstrap_regression(y_true: np.ndarray, err: np.ndarray, num: int, seed: int) -> dict[str, np.ndarray]:
  """MAE / RMSE / R2 on ``num`` bootstrap resamples, vectorised over a (chunk, n) index matrix."""
  n = y_true.size
  rng = np.random.default_rng(seed)
  chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
  out = {"mae": [], "rmse": [], "r2": []}
  done = 0
  while done < num:
    b = min(chunk, num - done)
    idx = rng.integers(0, n, size=(b, n))
    e = err[idx]
    yt = y_true[idx]
    mse = np.mean(e * e, axis=1)
    ss_tot = np.sum((yt - yt.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
      r2 = np.where(ss_tot > 0, 1.0 - n * mse / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    out["mae"].append(np.mean(np.abs(e), axis=1))
    out["rmse"].append(np.sqrt(mse))
    out["r2"].append(r2)
    done += b
  return {k: np.concatenate(v) for k, v in out.items()}


def regression_metrics(y_true: Any, y_pred: Any, *, bootstrap: int = 1000, seed: int = 0,
                       ci: float = 0.95) -> dict[str, Any]:
  """MAE, RMSE, R2 (and bias = mean(pred - true)) with percentile-bootstrap confidence intervals.

  Returns ``{"mae", "mae_ci_low", "mae_ci_high", "rmse", ..., "r2", ..., "bias", "n", "notes"}``. The CI keys are
  left out when ``bootstrap=0``. R2 is NaN (with a note) when the targets are constant; resamples whose targets
  are constant are ignored for the R2 interval. The same ``seed`` gives the same intervals.
  """
  yt = _vector(y_true, "y_true")
  yp = _vector(y_pred, "y_pred")
  _same_length(yt, yp, "y_true", "y_pred")
  _check_bootstrap_args(bootstrap, ci)
  n = yt.size
  notes: list[str] = []
  err = yp - yt
  ss_tot = float(np.sum((yt - yt.mean()) ** 2))
  point = {
      "mae": float(np.mean(np.abs(err))),
      "rmse": float(np.sqrt(np.mean(err * err))),
      "r2": 1.0 - float(np.sum(err * err)) / ss_tot if ss_tot > 0 else float("nan"),
  }
  if ss_tot <= 0:
    notes.append(f"r2 is NaN: all {n} targets are equal ({yt[0]:g}), so the variance to explain is 0")
  result: dict[str, Any] = {}
  boot = _bootstrap_regression(yt, err, bootstrap, seed) if bootstrap > 0 else None
  for name, value in point.items():
    result[name] = value
    if boot is not None:
      _add_ci(result, name, boot[name], ci, notes)
  if boot is not None and n < 10:
    notes.append(f"only {n} examples: bootstrap intervals are unreliable below ~10")
  result["bias"] = float(np.mean(err))
  result["n"] = int(n)
  result["notes"] = notes
  return result


# ----------------------------------------------------------------------------------------------------------------
# Binary classification
# ----------------------------------------------------------------------------------------------------------------


def _binary_from_predictions(y: np.ndarray, pred: np.ndarray, score: np.ndarray, what: str,
                             notes: list[str], bootstrap: int = 0, seed: int = 0,
                             ci: float = 0.95) -> dict[str, float]:
  """Confusion-based and ranking metrics for bool labels ``y``, bool predictions and a ranking score
  (+ bootstrap CIs of AUROC and AUPRC when ``bootstrap`` > 0)."""
  tp = int(np.sum(y & pred))
  fp = int(np.sum(~y & pred))
  fn = int(np.sum(y & ~pred))
  tn = int(np.sum(~y & ~pred))
  n_pos, n_neg = tp + fn, tn + fp
  if n_pos == 0 or n_neg == 0:
    missing = "positive" if n_pos == 0 else "negative"
    notes.append(f"{what}: no {missing} examples among {y.size}, so AUROC, AUPRC, balanced accuracy and "
                 f"{'sensitivity/recall' if n_pos == 0 else 'specificity'} are NaN")
  if tp + fp == 0:
    notes.append(f"{what}: nothing was predicted positive, so precision is reported as 0")
  recall = _div(tp, n_pos)
  specificity = _div(tn, n_neg)
  out = {
      "accuracy": (tp + tn) / y.size,
      "precision": tp / (tp + fp) if tp + fp else 0.0,
      "recall": recall,
      "sensitivity": recall,
      "specificity": specificity,
      "npv": _div(tn, tn + fn),
      "f1": _div(2 * tp, 2 * tp + fp + fn),
      "balanced_accuracy": (recall + specificity) / 2.0,
      "auroc": auroc(y, score),
      "auprc": average_precision(y, score),
      "tp": tp, "fp": fp, "fn": fn, "tn": tn,
      "n_pos": n_pos, "n_neg": n_neg, "n": int(y.size),
  }
  if bootstrap > 0:
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
  tp/fp/fn/tn, n_pos, n_neg, n, threshold, notes; with ``bootstrap`` > 0 also auroc_ci_low/high and
  auprc_ci_low/high (percentile bootstrap, vectorised).
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


# ----------------------------------------------------------------------------------------------------------------
# Multi-class classification
# ----------------------------------------------------------------------------------------------------------------


def _bootstrap_classification(y: np.ndarray, pred: np.ndarray, num_classes: int, num: int,
                               seed: int) -> dict[str, np.ndarray]:
  """Accuracy (= micro-F1), macro-F1 and balanced accuracy on ``num`` bootstrap resamples of (label, prediction)
  pairs, with the point estimate's conventions (macro over classes seen in the resample's labels or predictions;
  balanced accuracy over classes in its labels). Vectorised over a (chunk, n, C) one-hot tensor."""
  n = y.size
  rng = np.random.default_rng(seed)
  chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // (n * num_classes))
  classes = np.arange(num_classes)
  out = {"accuracy": [], "macro_f1": [], "balanced_accuracy": []}
  done = 0
  while done < num:
    b = min(chunk, num - done)
    idx = rng.integers(0, n, size=(b, n))
    yt, yp = y[idx], pred[idx]
    t1 = yt[..., None] == classes  # (b, n, C)
    p1 = yp[..., None] == classes
    tp = np.sum(t1 & p1, axis=1).astype(np.float64)
    support, predicted = t1.sum(axis=1).astype(np.float64), p1.sum(axis=1).astype(np.float64)
    fp, fn = predicted - tp, support - tp
    seen, present = (support > 0) | (predicted > 0), support > 0
    f1 = np.where(seen, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    recall = np.where(present, tp / np.maximum(support, 1), 0.0)
    out["accuracy"].append(tp.sum(axis=1) / n)
    out["macro_f1"].append(f1.sum(axis=1) / np.maximum(seen.sum(axis=1), 1))
    out["balanced_accuracy"].append(recall.sum(axis=1) / np.maximum(present.sum(axis=1), 1))
    done += b
  return {k: np.concatenate(v) for k, v in out.items()}


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


# ----------------------------------------------------------------------------------------------------------------
# Cross-validation summaries and JSON helpers
# ----------------------------------------------------------------------------------------------------------------


def flatten(metrics: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, float]:
  """Numeric leaves of a (nested) metrics dict as ``{"ef_lt_40/auroc": 0.91, ...}``.

  Strings, lists (confusion matrices, notes, class names) and None are left out; bools are left out too.
  """
  flat: dict[str, float] = {}
  for key, value in metrics.items():
    name = f"{prefix}{sep}{key}" if prefix else str(key)
    if isinstance(value, Mapping):
      flat.update(flatten(value, name, sep))
    elif isinstance(value, (bool, np.bool_)):
      continue
    elif isinstance(value, (int, float, np.integer, np.floating)):
      flat[name] = float(value)
  return flat


def summarize_folds(fold_metrics: Iterable[Mapping[str, Any]], *, ddof: int = 1) -> dict[str, dict[str, Any]]:
  """Mean and standard deviation of every numeric metric across cross-validation folds.

  Nested dicts are flattened with "/" (``per_class/A4C/f1``). Returns ``{metric: {"mean", "std", "values",
  "n_valid"}}`` where ``values`` holds one entry per fold (NaN where that fold had no value) and mean/std use only
  the finite values. ``std`` is the sample standard deviation (``ddof=1``); NaN with fewer than two finite values.
  """
  folds = [flatten(m) for m in fold_metrics]
  if not folds:
    raise UserError("summarize_folds: got no fold results; pass one metrics dict per fold")
  keys: list[str] = []
  for f in folds:
    keys.extend(k for k in f if k not in keys)
  summary: dict[str, dict[str, Any]] = {}
  for k in keys:
    values = np.array([f.get(k, float("nan")) for f in folds], dtype=np.float64)
    finite = values[np.isfinite(values)]
    summary[k] = {
        "mean": float(np.mean(finite)) if finite.size else float("nan"),
        "std": float(np.std(finite, ddof=ddof)) if finite.size > ddof else float("nan"),
        "values": [float(v) for v in values],
        "n_valid": int(finite.size),
    }
  return summary


def format_mean_std(mean: float | Mapping[str, Any], std: float | None = None, digits: int = 3) -> str:
  """``"0.812 +- 0.034"``. Accepts ``(mean, std)`` or one entry of :func:`summarize_folds` output."""
  if isinstance(mean, Mapping):
    mean, std = mean["mean"], mean["std"]
  if std is None or not math.isfinite(std):
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} +- {std:.{digits}f}"


def format_summary(summary: Mapping[str, Mapping[str, Any]], digits: int = 3) -> dict[str, str]:
  """Every metric of a :func:`summarize_folds` result as ``"mean +- std"`` text (for tables and logs)."""
  return {k: format_mean_std(v, digits=digits) for k, v in summary.items()}


def json_safe(obj: Any) -> Any:
  """A copy of ``obj`` that strict JSON accepts: NaN/inf -> None, numpy scalars/arrays -> python values."""
  if isinstance(obj, Mapping):
    return {str(k): json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return json_safe(obj.tolist())
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, (int, np.integer)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    return float(obj) if math.isfinite(obj) else None
  return obj
