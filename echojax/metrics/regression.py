"""Regression metrics (MAE, RMSE, R2, bias) with bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

from echojax.metrics._checks import _check_bootstrap_args, _same_length, _vector
from echojax.metrics.bootstrap import _add_ci, _bootstrap_regression


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
