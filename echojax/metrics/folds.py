"""Cross-validation summaries (mean +- std over folds) and JSON helpers for metrics dicts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from echojax.errors import UserError


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
