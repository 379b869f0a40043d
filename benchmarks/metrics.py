"""Bootstrap-CI benchmark: echojax's vectorised bootstrap vs a per-resample scikit-learn loop, side by side.

    python benchmarks/metrics.py [--n 1300 10000] [--resamples 1000] [--repeats 3] [--classes 5] [--seed 0]

``echojax.metrics`` computes its point estimates with scikit-learn but keeps a hand-written, vectorised bootstrap
(``echojax/metrics/bootstrap.py``) for the confidence intervals. This measures whether that is still worth it: for
each test-set size ``--n`` (1,300 is EchoNet-Dynamic's test split) and each metric family it times

- **vectorised**: the function ``echojax.metrics`` calls (``_bootstrap_ranking`` for AUROC + average precision,
  ``_bootstrap_regression`` for MAE / RMSE / R2, ``_bootstrap_classification`` for accuracy / macro-F1 / balanced
  accuracy / macro precision, recall and specificity), ``--resamples`` resamples including drawing them;
- **sklearn loop**: the same resamples (the same seeded index draws) scored one at a time with scikit-learn's
  ``roc_auc_score`` + ``average_precision_score``, ``mean_absolute_error`` + ``root_mean_squared_error`` +
  ``r2_score``, ``accuracy_score`` + ``f1_score(average="macro")`` + ``balanced_accuracy_score`` +
  ``precision_score`` / ``recall_score(average="macro")`` + specificity from ``confusion_matrix``.

After a small untimed warm-up, each is run ``--repeats`` times in this process on synthetic data (realistic prevalence / noise); the table prints
the min and median seconds per bootstrap, the speed-up of the vectorised version (sklearn median / vectorised
median) and the largest difference between the two methods' per-resample values (they must agree; the tests
assert it). The vectorised bootstrap is kept where it is >= 5x faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from echojax.errors import UserError, cli_main  # noqa: E402
from echojax.metrics import bootstrap as B  # noqa: E402

KEEP_IF_FASTER = 5.0


def synthetic(n: int, num_classes: int, seed: int) -> dict[str, np.ndarray]:
  """EF-like regression targets/predictions, a reduced-EF label with a score, and a multi-class prediction."""
  rng = np.random.default_rng(seed)
  ef = rng.uniform(15, 75, n)
  ef_pred = ef + rng.normal(0, 5, n)
  labels = rng.integers(0, num_classes, n)
  pred = np.where(rng.random(n) < 0.8, labels, rng.integers(0, num_classes, n))
  return {"ef": ef, "ef_pred": ef_pred, "reduced": ef < 50, "score": np.round(-ef_pred, 1),  # 0.1 % steps: ties
          "labels": labels, "pred": pred}


def sklearn_ranking(y, s, idx):
  from sklearn.metrics import average_precision_score, roc_auc_score

  out = {"auroc": [], "auprc": []}
  for i in idx:
    yi, si = y[i], s[i]
    ok = 0 < yi.sum() < yi.size  # a resample with one class has no AUROC (NaN, as echojax reports)
    out["auroc"].append(roc_auc_score(yi, si) if ok else np.nan)
    out["auprc"].append(average_precision_score(yi, si) if ok else np.nan)
  return out


def sklearn_regression(yt, yp, idx):
  from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

  out = {"mae": [], "rmse": [], "r2": []}
  for i in idx:
    out["mae"].append(mean_absolute_error(yt[i], yp[i]))
    out["rmse"].append(root_mean_squared_error(yt[i], yp[i]))
    out["r2"].append(r2_score(yt[i], yp[i]))
  return out


def sklearn_classification(y, pred, idx):
  from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                               precision_recall_fscore_support, precision_score, recall_score)

  out = {k: [] for k in ("accuracy", "macro_f1", "balanced_accuracy", "macro_precision", "macro_recall",
                         "macro_specificity", "class_precision", "class_recall", "class_f1")}
  classes = np.arange(max(int(y.max()), int(pred.max())) + 1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a resample where a predicted class has no true example
    for i in idx:
      out["accuracy"].append(accuracy_score(y[i], pred[i]))
      out["macro_f1"].append(f1_score(y[i], pred[i], average="macro", zero_division=0))
      out["balanced_accuracy"].append(balanced_accuracy_score(y[i], pred[i]))
      out["macro_precision"].append(precision_score(y[i], pred[i], average="macro", zero_division=0))
      out["macro_recall"].append(recall_score(y[i], pred[i], average="macro", zero_division=0))
      # scikit-learn has no specificity: TN / (TN + FP) per class from its confusion matrix, over the classes in
      # the labels or predictions that have negatives
      cm = confusion_matrix(y[i], pred[i])
      support, predicted, tp = cm.sum(1), cm.sum(0), np.diag(cm)
      neg = len(y[i]) - support
      ok = neg > 0
      out["macro_specificity"].append(float(np.mean((neg - predicted + tp)[ok] / neg[ok])) if ok.any() else np.nan)
      # per class, NaN where echojax's point estimate is NaN (class neither true nor predicted; recall: no example)
      p, r, f, sup = precision_recall_fscore_support(y[i], pred[i], labels=classes, zero_division=0)
      seen = (sup > 0) | np.isin(classes, pred[i])
      out["class_precision"].append(np.where(seen, p, np.nan))
      out["class_recall"].append(np.where(sup > 0, r, np.nan))
      out["class_f1"].append(np.where(seen, f, np.nan))
  return out


def families(d: dict[str, np.ndarray], num_classes: int, num: int, seed: int):
  """(label, vectorised(), sklearn_loop()) per metric family; both return {metric: per-resample values}."""
  n = d["ef"].size

  def draws():  # the resample indices the vectorised code draws (chunked draws = one big draw)
    return np.random.default_rng(seed).integers(0, n, size=(num, n))

  return [
      ("ranking: AUROC + AP", lambda: B._bootstrap_ranking(d["reduced"], d["score"], num, seed),
       lambda: sklearn_ranking(d["reduced"], d["score"], draws())),
      ("regression: MAE + RMSE + R2", lambda: B._bootstrap_regression(d["ef"], d["ef_pred"] - d["ef"], num, seed),
       lambda: sklearn_regression(d["ef"], d["ef_pred"], draws())),
      ("classification: acc F1 bacc P R spec",
       lambda: B._bootstrap_classification(d["labels"], d["pred"], num_classes, num, seed),
       lambda: sklearn_classification(d["labels"], d["pred"], draws())),
  ]


def timed(fn, repeats: int) -> tuple[list[float], dict]:
  times, out = [], None
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t)
  return times, out


def max_diff(a: dict, b: dict) -> float:
  worst = 0.0
  for k, v in a.items():
    x, y = np.asarray(v, np.float64), np.asarray(b[k], np.float64)
    if not np.array_equal(np.isnan(x), np.isnan(y)):
      return float("inf")
    both = ~np.isnan(x)
    if both.any():
      worst = max(worst, float(np.max(np.abs(x[both] - y[both]))))
  return worst


@cli_main
def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--n", type=int, nargs="+", default=[1300, 10000],
                 help="test-set sizes (default 1300 = EchoNet-Dynamic's test split, and 10000)")
  p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000, as evaluation)")
  p.add_argument("--repeats", type=int, default=3, help="timed runs of each method (default 3)")
  p.add_argument("--classes", type=int, default=5, help="classes of the multi-class family (default 5: views)")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if min(args.n) < 10:
    raise UserError(f"--n {min(args.n)}: give test-set sizes >= 10")
  if args.resamples < 1 or args.repeats < 1:
    raise UserError("--resamples and --repeats must be >= 1")
  if args.classes < 2:
    raise UserError("--classes must be >= 2")
  import sklearn
  import sklearn.metrics  # noqa: F401  (imported before timing)

  for _, vectorised, loop in families(synthetic(50, args.classes, args.seed), args.classes, 5, args.seed):
    vectorised(), loop()  # warm-up: first calls, lazy imports
  print(f"bootstrap CIs, {args.resamples} resamples, {args.repeats} repeats, scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
  print("seconds per bootstrap (min / median); speed-up = sklearn median / vectorised median")
  print(f"{'metric family':<36}{'n':>7}{'vectorised min':>16}{'median':>9}{'sklearn min':>13}{'median':>9}"
        f"{'speed-up':>10}{'max |diff|':>12}")
  worst: dict[str, float] = {}
  for n in args.n:
    d = synthetic(n, args.classes, args.seed)
    for label, vectorised, loop in families(d, args.classes, args.resamples, args.seed):
      tv, ov = timed(vectorised, args.repeats)
      ts, os_ = timed(loop, args.repeats)
      speedup = statistics.median(ts) / statistics.median(tv)
      worst[label] = min(worst.get(label, float("inf")), speedup)
      print(f"{label:<36}{n:>7}{min(tv):>16.4f}{statistics.median(tv):>9.4f}{min(ts):>13.4f}"
            f"{statistics.median(ts):>9.4f}{speedup:>9.1f}x{max_diff(ov, os_):>12.1e}", flush=True)
  print()
  for label, s in worst.items():
    verdict = "keep the vectorised bootstrap" if s >= KEEP_IF_FASTER else "use the scikit-learn loop"
    print(f"{label}: slowest speed-up {s:.1f}x (keep if >= {KEEP_IF_FASTER:g}x): {verdict}")


if __name__ == "__main__":
  main()
