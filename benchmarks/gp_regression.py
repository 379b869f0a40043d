"""Gaussian-process regression of EF on frame features: scikit-learn vs tinygp (JAX), side by side in one run.

    python benchmarks/gp_regression.py [--n 1000 2000 7465] [--dim 2048] [--pca 64] [--test 1277]
                                       [--fit-subset 2000] [--steps 150] [--seed 0] [--libs sklearn tinygp]

The key-frame LVEF system (seed 004) regresses EF on a frame's ResNet50 features with a Gaussian process and
reads its predictive standard deviation as uncertainty. EchoNet-Dynamic has 7,465 training videos: is an exact GP
feasible at that size, and with which library? Each row times one library on the same data:

- data: synthetic features shaped like pooled ResNet50 features (``--dim`` 2048, non-negative, a low-dimensional
  EF-dependent structure plus noise), EF uniform in 15-75 %; ``--n`` training rows, ``--test`` test rows
  (1,277 = EchoNet-Dynamic's test split);
- the same model for both: features standardised, then PCA to ``--pca`` dimensions (0 = none), fit on the training
  rows; EF standardised; kernel ``amplitude * RBF(lengthscale) + white noise``;
- hyperparameters: maximum marginal likelihood on a random ``--fit-subset`` of the training rows (scikit-learn:
  its L-BFGS-B, no restarts; tinygp: ``--steps`` of Adam on the negative log-likelihood, jitted), then the exact
  posterior on ALL training rows gives the test mean and standard deviation (both in float64).

Columns: hyperparameter-fit seconds, exact fit + predict seconds on all rows, test MAE (EF %), mean predictive
std, and the coverage of the 68 % and 95 % intervals (calibration). tinygp runs only where it is installed
(``pip install tinygp==0.3.1``; it is not an echojax dependency unless this benchmark says it is worth one).
Measured (README, Performance): scikit-learn fits the hyperparameters in under a minute and the exact 7,465-row
posterior with 1,277 predictions in 38 s on 2 CPU cores; tinygp with Adam was 8x slower at 1,000 rows and worse
calibrated, so the key-frame GP is scikit-learn's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from echojax.errors import UserError, cli_main  # noqa: E402


def synthetic(n: int, num_test: int, dim: int, seed: int) -> tuple[np.ndarray, ...]:
  """(X_train, y_train, X_test, y_test): non-negative features with an 8-d EF-dependent latent structure."""
  rng = np.random.default_rng(seed)
  total = n + num_test
  ef = rng.uniform(15, 75, total)
  latent = np.stack([np.sin(ef / 60 * (k + 1)) for k in range(4)] + [rng.normal(0, 1, total) for _ in range(4)], 1)
  mix = rng.normal(0, 1, (latent.shape[1], dim)) / np.sqrt(latent.shape[1])
  x = np.maximum(latent @ mix + rng.normal(0, 0.5, (total, dim)), 0.0)
  return x[:n], ef[:n], x[n:], ef[n:]


def prepare(x_train, y_train, x_test, pca: int):
  from sklearn.decomposition import PCA
  from sklearn.preprocessing import StandardScaler

  scaler = StandardScaler().fit(x_train)
  a, b = scaler.transform(x_train), scaler.transform(x_test)
  if pca:
    p = PCA(pca, random_state=0).fit(a)
    a, b = p.transform(a), p.transform(b)
    s = a.std(0).mean()
    a, b = a / s, b / s
  mu, sd = y_train.mean(), y_train.std()
  return a, (y_train - mu) / sd, b, mu, sd


def run_sklearn(a, ys, b, subset):
  from sklearn.gaussian_process import GaussianProcessRegressor
  from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

  kernel = ConstantKernel(1.0) * RBF(length_scale=np.sqrt(a.shape[1])) + WhiteKernel(0.1)
  t0 = time.perf_counter()
  hyper = GaussianProcessRegressor(kernel, n_restarts_optimizer=0, random_state=0).fit(a[subset], ys[subset])
  t1 = time.perf_counter()
  gp = GaussianProcessRegressor(hyper.kernel_, optimizer=None).fit(a, ys)
  mean, std = gp.predict(b, return_std=True)
  return t1 - t0, time.perf_counter() - t1, mean, std


def run_tinygp(a, ys, b, subset, steps: int):
  import jax

  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  import optax
  import tinygp

  def build(p, x):
    k = jnp.exp(p["log_amp"]) * tinygp.kernels.ExpSquared(scale=jnp.exp(p["log_scale"]))
    return tinygp.GaussianProcess(k, x, diag=jnp.exp(p["log_noise"]))

  xs, yv = jnp.asarray(a[subset]), jnp.asarray(ys[subset])
  params = {"log_amp": jnp.zeros(()), "log_scale": jnp.log(jnp.sqrt(float(a.shape[1]))),
            "log_noise": jnp.log(0.1)}
  opt = optax.adam(0.05)
  loss = lambda p: -build(p, xs).log_probability(yv)  # noqa: E731

  @jax.jit
  def step(p, s):
    val, g = jax.value_and_grad(loss)(p)
    upd, s = opt.update(g, s)
    return optax.apply_updates(p, upd), s, val

  t0 = time.perf_counter()
  state = opt.init(params)
  for _ in range(steps):
    params, state, _ = step(params, state)
  jax.block_until_ready(params)
  t1 = time.perf_counter()

  @jax.jit
  def posterior(p, x, y, xt):
    cond = build(p, x).condition(y, xt).gp
    return cond.loc, jnp.sqrt(cond.variance)

  mean, std = posterior(params, jnp.asarray(a), jnp.asarray(ys), jnp.asarray(b))
  mean, std = np.asarray(mean), np.asarray(std)
  return t1 - t0, time.perf_counter() - t1, mean, std


@cli_main
def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 7465], help="training-set sizes")
  p.add_argument("--dim", type=int, default=2048)
  p.add_argument("--pca", type=int, default=64, help="PCA dimensions before the GP (0 = the raw features)")
  p.add_argument("--test", type=int, default=1277)
  p.add_argument("--fit-subset", type=int, default=2000, help="rows the hyperparameters are fit on")
  p.add_argument("--steps", type=int, default=150, help="tinygp: Adam steps on the marginal likelihood")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--libs", nargs="+", default=["sklearn", "tinygp"], choices=["sklearn", "tinygp"])
  a = p.parse_args(argv)
  if min(a.n) < 20 or a.test < 10:
    raise UserError("give --n >= 20 and --test >= 10")
  libs = list(a.libs)
  if "tinygp" in libs:
    try:
      import tinygp  # noqa: F401
    except ImportError:
      libs.remove("tinygp")
      print("tinygp is not installed (pip install tinygp==0.3.1): scikit-learn only")
  print(f"{'n':>6} {'library':>8} {'hyper s':>8} {'fit+pred s':>10} {'MAE':>6} {'mean std':>8} "
        f"{'cov68':>6} {'cov95':>6}")
  for n in a.n:
    x, y, xt, yt = synthetic(n, a.test, a.dim, a.seed)
    ta, ys, tb, mu, sd = prepare(x, y, xt, a.pca)
    subset = np.random.default_rng(a.seed).permutation(n)[:min(n, a.fit_subset)]
    for lib in libs:
      hyper, fit, mean, std = (run_sklearn(ta, ys, tb, subset) if lib == "sklearn"
                               else run_tinygp(ta, ys, tb, subset, a.steps))
      pred, s = mean * sd + mu, std * sd
      z = np.abs(pred - yt) / np.maximum(s, 1e-12)
      print(f"{n:>6} {lib:>8} {hyper:>8.3f} {fit:>10.3f} {np.mean(np.abs(pred - yt)):>6.2f} {s.mean():>8.2f} "
            f"{np.mean(z <= 1.0):>6.2f} {np.mean(z <= 1.96):>6.2f}", flush=True)


if __name__ == "__main__":
  main()
