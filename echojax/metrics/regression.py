"""Regression metrics (MAE, RMSE, R2 from scikit-learn; bias) with bootstrap confidence intervals."""

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
  from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

  yt = _vector(y_true, "y_true")
  yp = _vector(y_pred, "y_pred")
  _same_length(yt, yp, "y_true", "y_pred")
  _check_bootstrap_args(bootstrap, ci)
  n = yt.size
  notes: list[str] = []
  err = yp - yt
  constant = bool(np.all(yt == yt[0]))
  point = {
      "mae": float(mean_absolute_error(yt, yp)),
      "rmse": float(root_mean_squared_error(yt, yp)),
      # scikit-learn reports 1.0 or 0.0 for constant targets; undefined here
      "r2": float("nan") if constant else float(r2_score(yt, yp)),
  }
  if constant:
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
