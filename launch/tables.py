"""Published tables: a sweep's finished runs laid out as a publication's table, with bootstrap CIs, and paired
comparisons between the settings of an ablation.

A sweep file (experiments/sweeps/NAME.py) may define, beside ``get_sweep``:

- ``table(runs: list[RunView], sweep) -> Table``: the publication's rows and columns, read from each run's
  evaluation (``run.metrics(split)``: evaluate's metrics dict; ``run.predictions(split)``: its predictions CSV
  rows). ``launch.sweep`` writes it as ``table.csv``, ``table.md`` and ``table.png`` beside ``results.*``.
- ``"compare": True`` in the sweep dict: every pair of settings is compared on the same test examples (McNemar's
  exact test and a paired bootstrap of the accuracy difference, seeds pooled, Holm-adjusted over the pairs:
  ``echojax.metrics.paired``) into ``paired.csv``, ``paired.md`` and ``paired.png``.

:data:`PUBLISHED` lists every published table with the one command that regenerates it (the README's commands
table is this list; ``python -m launch.sweep --list`` prints it).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from echojax.errors import UserError

# (system, table, command; "{variant}" is demo for CPU minutes, full for the publication's size)
PUBLISHED = [
    ("EchoSDNet", "per-class precision / recall / F1, accuracy, test loss, ROC-AUC, PR-AUC, confusion matrix",
     "python -m launch.sweep echosdnet_table --local --variant {variant}"),
    ("View classification", "image vs video models: micro-F1 of EfficientNet-B2 and the seven video models",
     "python -m launch.sweep view_models --local --variant {variant}"),
    ("View classification", "spatial / temporal weighting ablation, seeds, paired comparisons",
     "python -m launch.sweep spatiotemporal_weighting --local --variant {variant}"),
    ("EF classification", "ResNet18 / ResNet152 at 28 / 56 / 112 px, weighted and unweighted: Train / Val / Test "
     "accuracy, AUROC, AUPRC", "python -m launch.sweep ef_classification_table --local --variant {variant}"),
    ("EF (EchoNet-Dynamic)", "beat-by-beat EF beside all clips (MAE, RMSE, R2; per-beat spread in the CSV)",
     "python -m echojax.evaluate --workdir RUN --clips beats"),
    ("LVAD transfer", "2/3/5/7-fold CV: test/train accuracy, AUROC, AUPRC (mean +- std)",
     "python -m echojax.cv --config lvad_transfer:{variant} --folds 2,3,5,7"),
    ("Enhanced ResNet50 (ECG images)", "ablation: each enhancement off in turn",
     "python -m launch.sweep ecg_image_ablation --local --variant {variant}"),
    ("Key-frame LVEF", "ED / ES / mid: MLP classification, MLP and GP regression, ensembles",
     "python -m echojax.keyframe_study --config keyframe_lvef:{variant}"),
]


@dataclass
class Cell:
  """One table cell: a number (with its CI when there is one), a count or a text."""
  value: Any = None
  low: float | None = None
  high: float | None = None

  def text(self, digits: int = 3) -> str:
    v = self.value
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
      return ""
    if isinstance(v, (float, np.floating)):
      ci = (f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
            if _finite(self.low) and _finite(self.high) else "")
      return f"{v:.{digits}f}{ci}"
    return str(v)


def _finite(v) -> bool:
  return isinstance(v, (int, float, np.floating)) and math.isfinite(v)


def _is_rate(c: Cell) -> bool:
  """A float cell (a rate, a score): drawn in table.png; counts and texts are not."""
  return isinstance(c.value, (float, np.floating)) and math.isfinite(c.value)


def lookup(metrics: dict | None, dotted: str) -> Cell:
  """The cell of metric ``dotted`` (``per_class.dual.f1``) with its ``_ci_low``/``_ci_high`` siblings."""
  if metrics is None:
    return Cell()
  *path, last = dotted.split(".")
  node = metrics
  for part in path:
    node = node.get(part) if isinstance(node, dict) else None
  if not isinstance(node, dict) or node.get(last) is None:
    return Cell()
  return Cell(node[last], node.get(f"{last}_ci_low"), node.get(f"{last}_ci_high"))


@dataclass
class Table:
  title: str
  header: list[str]
  rows: list[list[Any]]  # first entry: the row label; then Cell / number / str per column
  notes: list[str] = field(default_factory=list)
  plot: list[str] | None = None  # numeric columns to draw in table.png (default: every column with a number)
  ylabel: str = "value"


class RunView:
  """What a table reads of one run of a sweep: its evaluation on each split."""

  def __init__(self, result: dict, sweep: dict):
    self.name, self.setting, self.seed = result["name"], result.get("setting", result["name"]), result.get("seed")
    self.run = result
    self.workdir = Path(result["workdir"])
    self._sweep = sweep

  def eval_dir(self, split: str) -> Path:
    return self.workdir / f"eval_{split}"

  def metrics(self, split: str) -> dict | None:
    path = self.eval_dir(split) / "metrics.json"
    return json.loads(path.read_text())["metrics"] if path.is_file() else None

  def predictions(self, split: str) -> list[dict] | None:
    path = self.eval_dir(split) / "predictions.csv"
    if not path.is_file():
      return None
    with path.open(newline="") as f:
      return list(csv.DictReader(f))


def _short(title: str, width: int = 72) -> str:
  first = title.split("\n")[0]
  return first if len(first) <= width else first[:width - 3].rstrip() + "..."


def _cells(row: list[Any]) -> list[Cell]:
  return [c if isinstance(c, Cell) else Cell(c) for c in row[1:]]


def write_table(table: Table, out: Path, stem: str = "table") -> dict[str, Path]:
  """``<stem>.csv`` (value and, where a column has them, ``_ci_low``/``_ci_high`` columns), ``<stem>.md`` and a
  ``<stem>.png`` of the numeric columns with their intervals."""
  out.mkdir(parents=True, exist_ok=True)
  cells = [_cells(r) for r in table.rows]
  cols = table.header[1:]
  with_ci = [any(_finite(row[j].low) for row in cells) for j in range(len(cols))]
  with open(out / f"{stem}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([table.header[0]] + [name for j, c in enumerate(cols)
                                    for name in ([c, f"{c}_ci_low", f"{c}_ci_high"] if with_ci[j] else [c])])
    for label, row in zip((r[0] for r in table.rows), cells):
      w.writerow([label] + [v for j, c in enumerate(row)
                            for v in ([c.value, c.low, c.high] if with_ci[j] else [c.value])])
  lines = [f"{table.title}\n", "| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
  lines += ["| " + " | ".join([str(label)] + [c.text() for c in row]) + " |"
            for label, row in zip((r[0] for r in table.rows), cells)]
  lines += [""] + [f"- {n}" for n in table.notes]
  (out / f"{stem}.md").write_text("\n".join(lines).rstrip() + "\n")
  paths = {"csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
  plot_cols = table.plot or [c for j, c in enumerate(cols) if any(_is_rate(row[j]) for row in cells)]
  idx = [cols.index(name) for name in plot_cols]
  keep = [i for i, row in enumerate(cells) if any(_is_rate(row[j]) for j in idx)]  # rows with a rate to draw
  if idx and keep:
    from echojax.plots import plot_metric_vs_param
    series, errs = {}, {}
    for name, j in zip(plot_cols, idx):
      col = [cells[i][j] for i in keep]
      vals = [float(c.value) if _is_rate(c) else float("nan") for c in col]
      series[name] = vals
      # max(0, .): a percentile interval need not contain its point estimate (or only to rounding)
      errs[name] = [[max(0.0, v - c.low) if _finite(c.low) else float("nan") for v, c in zip(vals, col)],
                    [max(0.0, c.high - v) if _finite(c.high) else float("nan") for v, c in zip(vals, col)]]
    labels = [str(table.rows[i][0]) for i in keep]
    paths["png"] = plot_metric_vs_param(labels, series, out / f"{stem}.png", yerr=errs, xlabel=table.header[0],
                                        ylabel=table.ylabel, title=_short(table.title),
                                        figsize=(max(6.0, 0.7 * len(labels) + 3), 4.8))
  return paths


def correctness(run: RunView, split: str) -> dict[int, bool]:
  """{record index: prediction == target} of a classification run's predictions CSV."""
  rows = run.predictions(split)
  if rows is None:
    raise UserError(f"{run.eval_dir(split) / 'predictions.csv'}: missing; evaluate the run on {split} first "
                    "(rerun the sweep: finished runs are kept)")
  if not rows or "prediction" not in rows[0] or "target" not in rows[0]:
    raise UserError(f"{run.eval_dir(split) / 'predictions.csv'}: needs target and prediction columns (a "
                    "classification run) for paired comparisons")
  return {int(r["index"]): int(float(r["prediction"])) == int(float(r["target"])) for r in rows}


def _by_setting(runs: list[RunView], split: str) -> tuple[dict[str, np.ndarray], list, int]:
  """{setting: (seeds, examples) correctness}, the seeds and the number of examples, checked to be the same
  examples and seeds for every setting."""
  by_setting: dict[str, dict[Any, dict[int, bool]]] = {}
  for r in runs:
    by_setting.setdefault(r.setting, {})[r.seed] = correctness(r, split)
  settings = list(by_setting)
  seeds = sorted(by_setting[settings[0]], key=str)
  examples = sorted(next(iter(by_setting[settings[0]].values())))
  for s in settings:
    if sorted(by_setting[s], key=str) != seeds:
      raise UserError(f"paired comparison: setting {s!r} has seeds {sorted(by_setting[s], key=str)}, "
                      f"{settings[0]!r} has {seeds}; finish every run of the sweep first")
    for seed, c in by_setting[s].items():
      if sorted(c) != examples:
        raise UserError(f"paired comparison: run {s!r} seed {seed} scored other {split} examples than "
                        f"{settings[0]!r}; every run must be evaluated on the same split")
  arrays = {s: np.array([[by_setting[s][seed][i] for i in examples] for seed in seeds]) for s in settings}
  return arrays, seeds, len(examples)


def seed_pooled_table(runs: list[RunView], split: str, title: str, *, bootstrap: int = 2000) -> Table:
  """One row per setting: accuracy pooled over its seeds [bootstrap CI over the examples] and per seed."""
  from echojax.metrics import pooled_accuracy

  arrays, seeds, n = _by_setting(runs, split)
  x = {r.setting: r.run.get("x", r.setting) for r in runs}
  rows = []
  for s, a in arrays.items():
    p = pooled_accuracy(a, bootstrap=bootstrap)
    rows.append([s, x[s], Cell(p["accuracy"], p["ci_low"], p["ci_high"]),
                 " / ".join(f"{v:.3f}" for v in p["per_seed"])])
  return Table(title=f"{title} ({split} split: {n} examples x {len(seeds)} seed(s), bootstrap 95% CIs over the "
                     "examples)",
               header=["setting", "x", "micro-F1 (seeds pooled)", "per seed (" + ", ".join(map(str, seeds)) + ")"],
               rows=rows, plot=["micro-F1 (seeds pooled)"], ylabel="micro-F1",
               notes=["paired.md compares every pair of settings on the same examples"])


def paired_comparisons(runs: list[RunView], split: str, *, bootstrap: int = 2000) -> Table:
  """Every pair of settings on the same examples: accuracies, difference A - B [paired bootstrap 95% CI], the
  McNemar discordant counts and exact p, and Holm-adjusted p over all pairs. Seeds are pooled; a setting's seeds
  must be the same set as every other setting's, and every run must have scored the same examples."""
  from echojax.metrics import holm, mcnemar_test, paired_bootstrap

  arrays, seeds, n = _by_setting(runs, split)
  settings = list(arrays)
  pairs = list(combinations(settings, 2))
  rows, raw_p = [], []
  for a, b in pairs:
    boot = paired_bootstrap(arrays[a], arrays[b], bootstrap=bootstrap)
    mc = mcnemar_test(arrays[a], arrays[b])
    raw_p.append(mc["p_value"])
    rows.append([f"{a} vs {b}", Cell(float(arrays[a].mean())), Cell(float(arrays[b].mean())),
                 Cell(boot["diff"], boot["ci_low"], boot["ci_high"]), mc["b"], mc["c"], Cell(mc["p_value"])])
  for row, p in zip(rows, holm(raw_p)):
    row += [Cell(p), "yes" if p < 0.05 else "no"]
  return Table(title=f"Paired comparisons on the {split} split: {n} examples x {len(seeds)} seed(s) "
                     f"({', '.join(map(str, seeds))}) per setting",
               header=["A vs B", "accuracy A", "accuracy B", "A - B [95% paired bootstrap CI]",
                       "only A right", "only B right", "McNemar p", "Holm p", "differs (Holm p < 0.05)"],
               rows=rows, plot=["A - B [95% paired bootstrap CI]"], ylabel="accuracy difference",
               notes=["accuracy = micro-F1 for single-label classification; seeds pooled (mean over seeds per "
                      "example; McNemar counts summed over seeds)",
                      "paired bootstrap: the examples resampled, the same resample for both settings and all seeds"])
