"""Cross-validation tables (``echojax.cv``'s report half): per-patient scores from each fold's predictions CSV,
one table row per (row, K) with the published fold mean +- std beside the pooled out-of-fold AUROC/AUPRC (bootstrap
CI) and a permutation test, written as ``cv_table.csv/.md``, ``oof_predictions.csv`` and ``cv_auroc.png``.

A fold job here is anything with ``workdir``, ``fold``, ``row``, ``k`` and ``seed`` (``echojax.cv.Job``), a cohort
anything with ``files`` and ``groups`` (``echojax.cv.Cohort``); this module does not import ``echojax.cv``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from echojax.errors import UserError

TRAIN, TEST = "cv_train", "cv_test"
COLUMNS = ("K-Fold", "Model", "Dropout/Reg", "Test Acc (+-)", "Train Acc (+-)", "Test AUROC (+-)", "Train AUROC (+-)",
           "Test AUPRC (+-)", "Train AUPRC (+-)")
EXTRA_COLUMNS = ("Pooled OOF AUROC [95% CI]", "Pooled OOF AUPRC [95% CI]", "Pooled AUROC over repeats",
                 "Permutation p (AUROC)", "Patients", "Folds run")


def fold_scores(job: Any, cohort: Any, split: str) -> dict[str, tuple[int, float]]:
  """{patient: (label, mean P(class 1) over the patient's cines)} from the job's predictions.csv of ``split``."""
  path = job.workdir / f"eval_{split}" / "predictions.csv"
  if not path.is_file():
    raise UserError(f"{path} is missing: fold {job.fold} of {job.row} (K={job.k}, seed {job.seed}) has not been "
                    "evaluated; run it (without --collect) or run the commands --print gives")
  patient_of = dict(zip(cohort.files, cohort.groups))
  per: dict[str, list] = {}
  with path.open() as f:
    rows = list(csv.DictReader(f))
  prob_col = [c for c in rows[0] if c.startswith("prob_")][-1] if rows else None
  for r in rows:
    pid = patient_of.get(r["file_name"])
    if pid is None:
      raise UserError(f"{path}: file {r['file_name']!r} is not in the cohort (the data was prepared again since?)")
    per.setdefault(str(pid), []).append((int(r["target"]), float(r[prob_col])))
  return {p: (v[0][0], float(np.mean([x[1] for x in v]))) for p, v in per.items()}


def fold_metrics(scores: dict[str, tuple[int, float]]) -> dict[str, float]:
  from echojax.metrics import binary_metrics

  y = np.array([v[0] for v in scores.values()])
  p = np.array([v[1] for v in scores.values()])
  m = binary_metrics(y, p)
  return {"accuracy": m["accuracy"], "auroc": m["auroc"], "auprc": m["auprc"]}


def summarize_row(jobs: list[Any], cohort: Any, *, bootstrap: int, permutations: int) -> tuple[dict, list[dict]]:
  """One table row (a row x K over every repeat's folds) and its out-of-fold predictions."""
  from echojax.metrics import binary_metrics, format_mean_std, permutation_test_auroc, summarize_folds

  test, train, oof = [], [], []
  by_seed: dict[int, dict[str, tuple[int, float]]] = {}
  for job in jobs:
    t = fold_scores(job, cohort, TEST)
    test.append(fold_metrics(t))
    train.append(fold_metrics(fold_scores(job, cohort, TRAIN)))
    by_seed.setdefault(job.seed, {}).update(t)
    oof += [{"row": job.row, "k": job.k, "seed": job.seed, "fold": job.fold, "patient": p, "label": y,
             "prob": round(s, 6)} for p, (y, s) in sorted(t.items())]
  st, sr = summarize_folds(test), summarize_folds(train)
  pooled_per_seed = []
  for seed_scores in by_seed.values():
    y = np.array([v[0] for v in seed_scores.values()])
    pooled_per_seed.append(binary_metrics(y, np.array([v[1] for v in seed_scores.values()]))["auroc"])
  patients = sorted(set.intersection(*[set(s) for s in by_seed.values()]))
  y = np.array([by_seed[next(iter(by_seed))][p][0] for p in patients])
  avg = np.array([np.mean([s[p][1] for s in by_seed.values()]) for p in patients])
  pooled = binary_metrics(y, avg, bootstrap=bootstrap, seed=0)
  perm = permutation_test_auroc(y, avg, permutations=permutations, seed=0)

  def ci(k):
    return f"{pooled[k]:.3f} [{pooled.get(k + '_ci_low', float('nan')):.3f}, {pooled.get(k + '_ci_high', float('nan')):.3f}]"

  spread = np.asarray(pooled_per_seed, float)
  row = {
      "K-Fold": jobs[0].k, "Model": jobs[0].row,
      "Test Acc (+-)": format_mean_std(st["accuracy"]), "Train Acc (+-)": format_mean_std(sr["accuracy"]),
      "Test AUROC (+-)": format_mean_std(st["auroc"]), "Train AUROC (+-)": format_mean_std(sr["auroc"]),
      "Test AUPRC (+-)": format_mean_std(st["auprc"]), "Train AUPRC (+-)": format_mean_std(sr["auprc"]),
      "Pooled OOF AUROC [95% CI]": ci("auroc"), "Pooled OOF AUPRC [95% CI]": ci("auprc"),
      "Pooled AUROC over repeats": (format_mean_std(float(spread.mean()), float(spread.std(ddof=1)))
                                    if len(spread) > 1 else f"{spread[0]:.3f} (1 repeat)"),
      "Permutation p (AUROC)": f"{perm['p_value']:.4f}", "Patients": len(patients), "Folds run": len(jobs),
      # numbers for the plot and the JSON
      "_test_auroc": st["auroc"], "_pooled": pooled, "_perm": perm,
  }
  return row, oof


def write_tables(rows: list[dict], oof: list[dict], out: Path, title: str) -> dict[str, Path]:
  cols = list(COLUMNS) + list(EXTRA_COLUMNS)
  with (out / "cv_table.csv").open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  lines = [f"{title}\n", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
  (out / "cv_table.md").write_text("\n".join(lines) + "\n")
  with (out / "oof_predictions.csv").open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["row", "k", "seed", "fold", "patient", "label", "prob"])
    w.writeheader()
    w.writerows(oof)
  return {"csv": out / "cv_table.csv", "md": out / "cv_table.md", "png": plot_rows(rows, out / "cv_auroc.png"),
          "oof": out / "oof_predictions.csv"}


def plot_rows(rows: list[dict], path: Path) -> Path:
  """Fold-mean test AUROC +- std (the published statistic) beside the pooled out-of-fold AUROC with its
  bootstrap 95% CI, per row and K."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.0), dpi=100)
  x = np.arange(len(rows))
  mean = [r["_test_auroc"]["mean"] for r in rows]
  std = [r["_test_auroc"]["std"] if math.isfinite(r["_test_auroc"]["std"]) else 0.0 for r in rows]
  pooled = [r["_pooled"]["auroc"] for r in rows]
  low = [p - r["_pooled"].get("auroc_ci_low", p) for p, r in zip(pooled, rows)]
  high = [r["_pooled"].get("auroc_ci_high", p) - p for p, r in zip(pooled, rows)]
  ax.errorbar(x - 0.1, mean, yerr=std, fmt="o", capsize=4, label="fold mean +- std (published statistic)")
  ax.errorbar(x + 0.1, pooled, yerr=[low, high], fmt="s", capsize=4, label="pooled out-of-fold, 95% bootstrap CI")
  ax.axhline(0.5, color="grey", lw=0.8, ls="--")
  ax.set_xticks(x, [f"{r['Model']}\nK={r['K-Fold']}" for r in rows], fontsize=8)
  ax.set_ylabel("test AUROC")
  ax.set_ylim(0, 1.05)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path
