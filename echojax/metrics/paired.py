"""Paired comparisons of two models scored on the same examples: McNemar's exact test and a paired bootstrap.

Overlapping confidence intervals of two accuracies say little when both models saw the same test cines: most
of each interval's width is the test set's sampling noise, which the two share. A paired test looks only at the
examples on which the models disagree. Inputs are per-example correctness, shape (N,) for one seed or (S, N) for
S seeds (training repeats) scored on the same N examples; seeds are pooled.

- :func:`mcnemar_test`: exact two-sided McNemar test (a binomial test on the discordant pairs, scipy), pooled
  over seeds: ``b`` = examples (x seeds) only model A got right, ``c`` = only B.
- :func:`paired_bootstrap`: the accuracy difference A - B (mean over seeds) with a percentile interval, resampling
  the N examples (the same resample for every seed and both models, so the pairing is kept).
- :func:`pooled_accuracy`: one setting's accuracy over seeds with the same resampling.
- :func:`holm`: Holm's step-down adjustment of a family of p-values (many pairs of settings).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from echojax.errors import UserError
from echojax.metrics.bootstrap import _BOOTSTRAP_CHUNK_ELEMENTS


def _correct(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
  xa, xb = (np.asarray(x) for x in (a, b))
  xa, xb = (x[None] if x.ndim == 1 else x for x in (xa, xb))
  if xa.shape != xb.shape or xa.ndim != 2 or xa.size == 0:
    raise UserError(f"paired comparison: correctness arrays must have the same shape (N,) or (seeds, N), got "
                    f"{np.shape(a)} and {np.shape(b)}; score both models on the same examples and seeds")
  for name, x in (("a", xa), ("b", xb)):
    if not np.isin(x, (0, 1)).all():
      raise UserError(f"paired comparison: {name} must hold per-example correctness (0/1 or bool)")
  return xa.astype(bool), xb.astype(bool)


def mcnemar_test(correct_a: Any, correct_b: Any) -> dict[str, Any]:
  """Exact McNemar test of "A and B are equally accurate". Returns b (only A right), c (only B right), n (pairs),
  p_value (two-sided exact binomial on b of b + c; 1.0 when they never disagree)."""
  from scipy.stats import binomtest

  xa, xb = _correct(correct_a, correct_b)
  b, c = int(np.sum(xa & ~xb)), int(np.sum(~xa & xb))
  p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
  return {"b": b, "c": c, "n": int(xa.size), "p_value": min(1.0, p)}


def paired_bootstrap(correct_a: Any, correct_b: Any, *, bootstrap: int = 2000, seed: int = 0,
                     ci: float = 0.95) -> dict[str, Any]:
  """Accuracy difference A - B with a paired percentile-bootstrap interval over the examples (seeds kept
  together), and the bootstrap's two-sided p-value (twice the share of resamples on the other side of 0)."""
  xa, xb = _correct(correct_a, correct_b)
  if bootstrap < 1 or not 0 < ci < 1:
    raise UserError(f"paired_bootstrap: bootstrap={bootstrap} must be >= 1 and ci={ci} in (0, 1)")
  d = (xa.astype(np.float64) - xb).mean(axis=0)  # (N,): per-example difference, averaged over seeds
  n = d.size
  rng = np.random.default_rng(seed)
  chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
  diffs = np.concatenate([d[rng.integers(0, n, size=(min(chunk, bootstrap - s), n))].mean(axis=1)
                          for s in range(0, bootstrap, chunk)])
  alpha = (1 - ci) / 2
  low, high = np.quantile(diffs, [alpha, 1 - alpha])
  p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
  return {"diff": float(d.mean()), "ci_low": float(low), "ci_high": float(high), "p_value": float(p),
          "bootstrap": int(bootstrap)}


def pooled_accuracy(correct: Any, *, bootstrap: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
  """Accuracy of one setting over S seeds x N examples: the mean, a percentile interval resampling the examples
  (seeds kept together, as :func:`paired_bootstrap`) and the per-seed accuracies."""
  x, _ = _correct(correct, correct)
  zero = np.zeros_like(x)
  r = paired_bootstrap(x, zero, bootstrap=bootstrap, seed=seed, ci=ci)
  return {"accuracy": r["diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
          "per_seed": x.mean(axis=1).tolist(), "n": int(x.shape[1]), "seeds": int(x.shape[0])}


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-adjusted p-values (same order as given): controls the chance of any false "differs" in the family."""
  p = np.asarray(p_values, dtype=np.float64)
  order = np.argsort(p)
  adjusted = np.empty_like(p)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (p.size - rank) * p[i]))
    adjusted[i] = running
  return adjusted.tolist()
