"""Percentile-bootstrap confidence intervals: vectorised resampling of ranking, regression and classification
metrics, and the interval itself (:func:`_add_ci`)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Bootstrap resamples are drawn in chunks so that the (chunk, n) index matrix stays below this many entries.
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


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


def _bootstrap_classification(y: np.ndarray, pred: np.ndarray, num_classes: int, num: int,
                               seed: int) -> dict[str, np.ndarray]:
  """Accuracy (= micro-F1), macro-F1, balanced accuracy, macro precision / recall / specificity and per-class
  precision / recall / F1 (``class_*``, (num, C)) on ``num``
  bootstrap resamples of (label, prediction) pairs, with the point estimate's conventions (macro over classes seen
  in the resample's labels or predictions; balanced accuracy over classes in its labels; specificity over seen
  classes that have negatives). Vectorised over a (chunk, n, C) one-hot tensor."""
  n = y.size
  rng = np.random.default_rng(seed)
  chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // (n * num_classes))
  classes = np.arange(num_classes)
  out = {k: [] for k in ("accuracy", "macro_f1", "balanced_accuracy", "macro_precision", "macro_recall",
                         "macro_specificity", "class_precision", "class_recall", "class_f1")}
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
    n_seen = np.maximum(seen.sum(axis=1), 1)
    out["macro_precision"].append(np.where(seen, tp / np.maximum(predicted, 1), 0.0).sum(axis=1) / n_seen)
    out["macro_recall"].append(recall.sum(axis=1) / n_seen)
    # per class (b, C), NaN where the point estimate's convention makes it NaN (class unseen; recall: no examples)
    out["class_precision"].append(np.where(seen, tp / np.maximum(predicted, 1), np.nan))
    out["class_recall"].append(np.where(present, tp / np.maximum(support, 1), np.nan))
    out["class_f1"].append(np.where(seen, f1, np.nan))
    negatives = n - support  # specificity = TN / (TN + FP), over seen classes that have negatives
    has_neg = seen & (negatives > 0)
    spec = np.where(has_neg, (negatives - fp) / np.maximum(negatives, 1), 0.0)
    with np.errstate(invalid="ignore"):
      out["macro_specificity"].append(spec.sum(axis=1) / np.where(has_neg.any(axis=1), has_neg.sum(axis=1), np.nan))
    done += b
  return {k: np.concatenate(v) for k, v in out.items()}
