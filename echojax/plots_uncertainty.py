"""Plots of regression residuals and predictive uncertainty (key-frame study), in ``echojax.plots``' conventions:
``(data..., path, *, options)``, a PNG of exactly figsize*dpi pixels, the path returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echojax import metrics as M
from echojax.plots import DEFAULT_DPI, _figure, _save


def plot_residuals(y_true: Any, y_pred: Any, path: str | Path, *, std: Any = None, title: str = "Residuals",
                   units: str = "%", figsize: tuple[float, float] = (10, 4.5), dpi: int = DEFAULT_DPI) -> Path:
  """Residual (pred - true) against the true and the predicted value; error bars of +-1 std when given."""
  yt, yp = M._vector(y_true, "y_true"), M._vector(y_pred, "y_pred")
  M._same_length(yt, yp, "y_true", "y_pred")
  sd = None if std is None else M._vector(std, "std")
  r = yp - yt
  fig = _figure(figsize, dpi)
  axes = fig.subplots(1, 2, sharey=True)
  for ax, x, lab in zip(axes, (yt, yp), ("true", "predicted")):
    if sd is not None:
      ax.errorbar(x, r, yerr=sd, fmt="o", ms=3, alpha=0.6, elinewidth=0.6, capsize=0)
    else:
      ax.scatter(x, r, s=12, alpha=0.7, edgecolors="none")
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel(f"{lab} ({units})" if units else lab)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel(f"predicted - true ({units})" if units else "predicted - true")
  fig.suptitle(f"{title}: MAE {np.mean(np.abs(r)):.2f}, bias {np.mean(r):+.2f}, n={yt.size}")
  return _save(fig, path)


def plot_calibration(y_true: Any, mean: Any, std: Any, path: str | Path, *, title: str = "Interval calibration",
                     figsize: tuple[float, float] = (5.5, 5.5), dpi: int = DEFAULT_DPI) -> Path:
  """Observed against nominal coverage of central Gaussian intervals (5% .. 99%), with the diagonal."""
  levels = np.concatenate([np.arange(0.05, 0.96, 0.05), [0.99]])
  cov = M.interval_coverage(y_true, mean, std, levels=tuple(levels) + (0.68,))
  obs = [cov[f"coverage_{round(lv * 100)}"] for lv in levels]
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfect calibration")
  ax.plot(levels, obs, "o-", ms=3, label="observed")
  ax.set_xlabel("nominal coverage of the central interval")
  ax.set_ylabel("observed coverage")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_title(f"{title}\n68%: {cov['coverage_68']:.2f}, 95%: {cov['coverage_95']:.2f}, n={cov['n']}")
  ax.legend(loc="upper left", fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_referral(curves: Mapping[str, Mapping[str, Any]], path: str | Path, *,
                  title: str = "Referring the most uncertain cases", units: str = "%",
                  figsize: tuple[float, float] = (6.5, 5), dpi: int = DEFAULT_DPI) -> Path:
  """MAE of the kept cases against the fraction referred (``metrics.referral_curve`` per model), random referral
  dashed."""
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  for i, (name, c) in enumerate(curves.items()):
    f = [p["fraction"] for p in c["curve"]]
    line, = ax.plot(f, [p["mae_kept"] for p in c["curve"]], "o-", ms=4, label=name)
    ax.plot(f, [p["mae_kept_random"] for p in c["curve"]], ls="--", color=line.get_color(), lw=1,
            label="random referral" if i == 0 else None)
  ax.set_xlabel("fraction referred to a human (largest predictive std first)")
  ax.set_ylabel(f"MAE of the kept cases ({units})" if units else "MAE of the kept cases")
  ax.set_title(title)
  ax.legend(fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, path)
