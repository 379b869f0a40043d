"""Input checks shared by the metrics: finite 1-D vectors, equal lengths, 0/1 labels, bootstrap arguments.

Each raises :class:`echojax.errors.UserError` naming the argument and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np

from echojax.errors import UserError


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


def _check_bootstrap_args(bootstrap: int, ci: float) -> None:
  if not 0.0 < ci < 1.0:
    raise UserError(f"ci={ci}: the confidence level must be between 0 and 1, e.g. 0.95")
  if bootstrap < 0:
    raise UserError(f"bootstrap={bootstrap}: the number of resamples must be >= 0 (0 turns the CIs off)")
