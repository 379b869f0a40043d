"""Calibration of predictive uncertainty (seed 004's "human-AI review zones", measured): interval coverage and
referral curves (MAE of the cases kept when the most uncertain ones go to a human)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from echojax.errors import UserError


def _inputs(y, mean, std):
  y, mean, std = (np.asarray(v, np.float64).reshape(-1) for v in (y, mean, std))
  if not (len(y) == len(mean) == len(std)):
    raise UserError(f"uncertainty metrics need equal lengths, got {len(y)}, {len(mean)}, {len(std)}")
  for name, v in (("y_true", y), ("mean", mean), ("std", std)):
    if not np.all(np.isfinite(v)):
      raise UserError(f"uncertainty metrics: {name} holds NaN/inf values")
  if np.any(std < 0):
    raise UserError("uncertainty metrics: std holds negative values")
  return y, mean, std


def interval_coverage(y_true: Any, mean: Any, std: Any, levels: Sequence[float] = (0.68, 0.95)) -> dict[str, Any]:
  """Fraction of cases inside the central Gaussian interval of each level (``coverage_68`` ...), the mean std and
  the Gaussian negative log-likelihood."""
  from scipy.stats import norm

  y, m, s = _inputs(y_true, mean, std)
  out: dict[str, Any] = {"n": int(len(y)), "notes": []}
  if not len(y):
    out["notes"].append("no cases")
    return {**out, **{f"coverage_{round(lv * 100)}": math.nan for lv in levels}, "mean_std": math.nan,
            "nll": math.nan}
  z = np.abs(y - m) / np.maximum(s, 1e-12)
  for lv in levels:
    out[f"coverage_{round(lv * 100)}"] = float(np.mean(z <= norm.ppf(0.5 + lv / 2)))
  ss = np.maximum(s, 1e-6)
  out["mean_std"] = float(np.mean(s))
  out["nll"] = float(np.mean(0.5 * np.log(2 * np.pi * ss ** 2) + 0.5 * ((y - m) / ss) ** 2))
  return out


def referral_curve(y_true: Any, y_pred: Any, std: Any,
                   fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5), *, seed: int = 0,
                   random_repeats: int = 200) -> dict[str, Any]:
  """For each fraction f of the most uncertain cases (largest std) referred to a human: the MAE of the cases
  kept, of those referred, and of keeping a random (1 - f) of the cases (mean over ``random_repeats``)."""
  y, p, s = _inputs(y_true, y_pred, std)
  err = np.abs(y - p)
  order = np.argsort(-s, kind="stable")
  rng = np.random.default_rng(seed)
  curve = []
  for f in fractions:
    if not 0 <= f < 1:
      raise UserError(f"referral fraction {f} must be in [0, 1)")
    r = int(round(f * len(y)))
    kept, referred = err[order[r:]], err[order[:r]]
    rand = [np.mean(err[rng.permutation(len(y))[r:]]) for _ in range(random_repeats)] if len(kept) else [math.nan]
    curve.append({"fraction": float(f), "n_kept": int(len(kept)),
                  "mae_kept": float(np.mean(kept)) if len(kept) else math.nan,
                  "mae_referred": float(np.mean(referred)) if r else math.nan,
                  "mae_kept_random": float(np.mean(rand))})
  return {"fractions": [float(f) for f in fractions], "curve": curve, "notes": []}
