"""Gaussian-process EF regression with a predictive standard deviation (seed 004), fit on train only.

    gp = GPRegressor(n_components=64, hyper_rows=2000).fit(x_train, ef_train)
    mean, std = gp.predict(x_test)          # EF and its predictive std (observation noise included)
    gp.save(DIR); GPRegressor.load(DIR)     # safetensors + gp.json, no pickle; numpy-only prediction

The model (chosen and timed in ``benchmarks/gp_regression.py``: scikit-learn's exact GP fits 7,465 EchoNet rows in
well under two minutes on 2 cores; tinygp with Adam was 8x slower and worse calibrated): features standardised and
reduced by PCA (both fit on train), EF standardised; kernel ``amplitude * RBF(length_scale) + WhiteKernel(noise)``
whose hyperparameters scikit-learn fits by marginal likelihood on a random subset of at most ``hyper_rows`` train
rows; then the exact posterior on ALL train rows with those hyperparameters fixed. The std is that of a new
observation (it includes the white noise), in EF units.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from echojax.errors import UserError

log = logging.getLogger("echojax.gp")
ARRAYS = "gp.safetensors"
META = "gp.json"


def _check(x: np.ndarray, y: np.ndarray | None = None, dim: int | None = None) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise UserError(f"GP features must be (N, D), got shape {x.shape}")
  if dim is not None and x.shape[1] != dim:
    raise UserError(f"GP features have {x.shape[1]} dims, the GP was fit on {dim}")
  if not np.all(np.isfinite(x)):
    raise UserError(f"GP features hold {int((~np.isfinite(x)).sum())} NaN/inf values")
  if y is not None:
    y = np.asarray(y, np.float64)
    if y.shape != (len(x),):
      raise UserError(f"GP targets must be ({len(x)},), got {y.shape}")
    if not np.all(np.isfinite(y)):
      raise UserError("GP targets (ef) hold NaN/inf values")
    if len(x) < 3:
      raise UserError(f"a GP needs at least 3 training rows, got {len(x)}")
  return x


class GPRegressor:
  def __init__(self, n_components: int = 64, hyper_rows: int = 2000, restarts: int = 0):
    self.n_components, self.hyper_rows, self.restarts = int(n_components), int(hyper_rows), int(restarts)
    self.arrays: dict[str, np.ndarray] = {}
    self.meta: dict = {}

  def fit(self, x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> "GPRegressor":
    from sklearn.decomposition import PCA
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    x = _check(x, y)
    y = np.asarray(y, np.float64)
    t0 = time.time()
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    k = min(self.n_components, len(x) - 1, x.shape[1])
    if k > 0:
      pca = PCA(k, random_state=seed).fit(z)
      comps, pmean = pca.components_, pca.mean_
    else:
      comps, pmean = np.eye(x.shape[1]), np.zeros(x.shape[1])
    a = (z - pmean) @ comps.T
    ym, ys = float(y.mean()), float(y.std() or 1.0)
    yn = (y - ym) / ys
    rng = np.random.default_rng(seed)
    sub = rng.permutation(len(a))[:self.hyper_rows]
    kernel = ConstantKernel(1.0) * RBF(length_scale=np.sqrt(a.shape[1])) + WhiteKernel(0.1)
    hyper = GaussianProcessRegressor(kernel, n_restarts_optimizer=self.restarts, random_state=seed).fit(a[sub], yn[sub])
    t1 = time.time()
    gp = GaussianProcessRegressor(hyper.kernel_, optimizer=None).fit(a, yn)
    kf = hyper.kernel_
    amp, ls, noise = float(kf.k1.k1.constant_value), float(kf.k1.k2.length_scale), float(kf.k2.noise_level)
    self.arrays = {"x_mean": mu, "x_scale": sd, "pca_mean": pmean, "pca_components": comps, "train_inputs": a,
                   "alpha": np.asarray(gp.alpha_, np.float64).reshape(-1), "chol": np.asarray(gp.L_, np.float64)}
    self.meta = {"format": "echojax-gp/1", "kernel": str(kf), "amplitude": amp, "length_scale": ls,
                 "noise": noise, "y_mean": ym, "y_scale": ys, "n_train": int(len(a)), "n_hyper": int(len(sub)),
                 "n_components": int(comps.shape[0]), "input_dim": int(x.shape[1]),
                 "hyper_seconds": round(t1 - t0, 2), "posterior_seconds": round(time.time() - t1, 2)}
    log.info("GP: kernel %s (hyperparameters on %d rows in %.1f s; posterior on %d rows in %.1f s)", kf, len(sub),
             t1 - t0, len(a), time.time() - t1)
    return self

  def _reduced(self, x: np.ndarray) -> np.ndarray:
    A = self.arrays
    return ((x - A["x_mean"]) / A["x_scale"] - A["pca_mean"]) @ A["pca_components"].T

  def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of EF for feature rows ``x`` (std of a new observation, noise included)."""
    from scipy.linalg import solve_triangular

    if not self.arrays:
      raise UserError("the GP is not fitted (call fit or GPRegressor.load)")
    x = _check(x, dim=self.meta["input_dim"])
    A, m = self.arrays, self.meta
    b = self._reduced(x)
    d2 = (np.sum(b ** 2, 1)[:, None] + np.sum(A["train_inputs"] ** 2, 1)[None] - 2 * b @ A["train_inputs"].T)
    ks = m["amplitude"] * np.exp(-0.5 * np.maximum(d2, 0.0) / m["length_scale"] ** 2)
    mean = ks @ A["alpha"]
    v = solve_triangular(A["chol"], ks.T, lower=True, check_finite=False)
    var = np.maximum(m["amplitude"] + m["noise"] - np.sum(v ** 2, 0), 0.0)
    return mean * m["y_scale"] + m["y_mean"], np.sqrt(var) * m["y_scale"]

  def save(self, out: str | Path) -> Path:
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float64) for k, v in self.arrays.items()}, str(out / ARRAYS))
    (out / META).write_text(json.dumps({**self.meta, "n_components_requested": self.n_components,
                                        "hyper_rows": self.hyper_rows, "restarts": self.restarts}, indent=1))
    return out

  @classmethod
  def load(cls, path: str | Path) -> "GPRegressor":
    from safetensors.numpy import load_file

    path = Path(path)
    if not (path / META).is_file() or not (path / ARRAYS).is_file():
      raise UserError(f"{path} is not a saved GP (needs {META} and {ARRAYS}, written by GPRegressor.save)")
    meta = json.loads((path / META).read_text())
    gp = cls(meta.get("n_components_requested", 64), meta.get("hyper_rows", 2000), meta.get("restarts", 0))
    gp.meta, gp.arrays = meta, dict(load_file(str(path / ARRAYS)))
    return gp
