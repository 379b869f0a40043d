"""PNG plots for evaluation, training runs and sweeps (matplotlib, Agg canvas, no pyplot state).

Every function takes numpy-able arrays (or a metrics JSONL file), writes one PNG and returns its path. Figures are
built as ``matplotlib.figure.Figure`` objects on an Agg canvas, never through ``pyplot``, so plotting works on
headless machines and inside notebooks without switching anybody's backend, and a figure is never left open.
matplotlib is imported lazily inside the functions so ``import echojax.plots`` stays cheap.

Image size: a PNG is exactly ``figsize * dpi`` pixels (no tight bounding box), so callers and tests can rely on
it; each function documents its default ``figsize``.

Functions: :func:`plot_confusion_matrix`, :func:`plot_roc_curve`, :func:`plot_pr_curve`, :func:`plot_ef_scatter`,
:func:`plot_bland_altman`, :func:`plot_training_curves`, :func:`plot_metric_vs_param`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echojax import metrics as M
from echojax.errors import UserError

DEFAULT_DPI = 100


def _figure(figsize: tuple[float, float], dpi: int):
  """A Figure on its own Agg canvas (no pyplot, no global backend change)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig, path: str | Path) -> Path:
  """Write ``fig`` as PNG at exactly figsize * dpi pixels (ignores a user's savefig.bbox = tight)."""
  import matplotlib

  path = Path(path)
  if path.suffix.lower() != ".png":
    raise UserError(f"{path}: plots are written as PNG; give a path ending in .png")
  path.parent.mkdir(parents=True, exist_ok=True)
  with matplotlib.rc_context({"savefig.bbox": "standard"}):
    fig.savefig(path, format="png", dpi=fig.dpi)
  return path


def _class_names(class_names: Sequence[str] | None, num: int, what: str) -> list[str]:
  if class_names is None:
    return [str(i) for i in range(num)]
  names = [str(c) for c in class_names]
  if len(names) != num:
    raise UserError(f"class_names has {len(names)} names but {what} has {num} classes; give one name per class")
  return names


# ----------------------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------------------


def plot_confusion_matrix(cm: Any, class_names: Sequence[str] | None, path: str | Path, *,
                          title: str = "Confusion matrix", figsize: tuple[float, float] | None = None,
                          dpi: int = DEFAULT_DPI) -> Path:
  """Two panels: raw counts and row-normalised rates (each row = one true class sums to 1).

  ``cm`` is (C, C) with rows = true class, columns = predicted class (as ``classification_metrics`` returns).
  Cells are annotated up to 25 classes. Default figsize: (2 * side + 1, side) inches, side = max(4.5, 0.5 C + 2).
  """
  cm = np.asarray(cm, dtype=np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise UserError(f"cm: expected a square (C, C) confusion matrix, got shape {cm.shape}")
  c = cm.shape[0]
  names = _class_names(class_names, c, "cm")
  side = max(4.5, 0.5 * c + 2.0)
  fig = _figure(figsize or (2 * side + 1, side), dpi)
  row_sums = cm.sum(axis=1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    norm = np.where(row_sums > 0, cm / np.where(row_sums > 0, row_sums, 1), 0.0)
  axes = fig.subplots(1, 2)
  fontsize = max(5, min(10, int(60 / max(c, 1))))
  for ax, data, label, fmt in ((axes[0], cm, "count", "{:.0f}"), (axes[1], norm, "fraction of true class", "{:.2f}")):
    vmax = data.max() if data.max() > 0 else 1.0
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax if label == "count" else 1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    ax.set_xticks(range(c), names, rotation=45 if c > 3 else 0, ha="right" if c > 3 else "center")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 25:
      cut = (vmax if label == "count" else 1.0) / 2
      for i in range(c):
        for j in range(c):
          ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=fontsize,
                  color="white" if data[i, j] > cut else "black")
  axes[0].set_title(f"counts (n={int(cm.sum())})")
  axes[1].set_title("row-normalised (recall on diagonal)")
  fig.suptitle(title)
  out = _save(fig, path)
  return out


def _curves(y_true: Any, scores: Any, class_names: Sequence[str] | None, kind: str):
  """[(label, x, y, area, prevalence)] for a binary score vector or one-vs-rest over (N, C) probabilities."""
  s = np.asarray(scores, dtype=np.float64)
  y = np.asarray(y_true)
  if s.ndim == 2 and s.shape[1] == 1:
    s = s[:, 0]
  if s.ndim == 1:
    pairs = [("positive" if class_names is None else str(list(class_names)[-1]), M._binary_labels(y, "y_true"), s)]
  elif s.ndim == 2:
    names = _class_names(class_names, s.shape[1], "scores")
    yi = M._vector(y, "y_true").astype(np.int64)
    classes = [1] if s.shape[1] == 2 else range(s.shape[1])
    pairs = [(names[c], yi == c, s[:, c]) for c in classes]
  else:
    raise UserError(f"scores: expected (N,) for binary or (N, C) probabilities for one-vs-rest, got {s.shape}")
  out = []
  for label, yc, sc in pairs:
    if not 0 < yc.sum() < yc.size:
      continue  # a curve is undefined without both classes; the legend says which were left out
    if kind == "roc":
      fpr, tpr, _ = M.roc_curve(yc, sc)
      out.append((label, fpr, tpr, M.auroc(yc, sc), yc.mean()))
    else:
      prec, rec, _ = M.precision_recall_curve(yc, sc)
      out.append((label, rec, prec, M.average_precision(yc, sc), yc.mean()))
  skipped = [p[0] for p in pairs if p[0] not in {o[0] for o in out}]
  return out, skipped


def plot_roc_curve(y_true: Any, scores: Any, path: str | Path, *, class_names: Sequence[str] | None = None,
                   title: str = "ROC curve", figsize: tuple[float, float] = (6, 5.5), dpi: int = DEFAULT_DPI) -> Path:
  """ROC curve(s) with AUROC in the legend and the chance diagonal.

  Binary: ``y_true`` 0/1 and ``scores`` (N,) (higher = positive). Multi-class: integer ``y_true`` and (N, C)
  probabilities give one one-vs-rest curve per class (just the positive class when C == 2). Classes with only
  one label value have no curve and are named in the title.
  """
  curves, skipped = _curves(y_true, scores, class_names, "roc")
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="chance")
  for label, x, y, area, _ in curves:
    ax.plot(x, y, lw=1.5, label=f"{label} (AUROC {area:.3f})")
  ax.set_xlim(-0.01, 1.01)
  ax.set_ylim(-0.01, 1.01)
  ax.set_xlabel("false positive rate (1 - specificity)")
  ax.set_ylabel("true positive rate (sensitivity)")
  ax.set_aspect("equal")
  if len(curves) > 1:
    title += f" - macro AUROC {np.mean([c[3] for c in curves]):.3f}"
  if skipped:
    title += f"\n(no curve for {', '.join(skipped)}: one class only)"
  ax.set_title(title)
  ax.legend(loc="lower right", fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_pr_curve(y_true: Any, scores: Any, path: str | Path, *, class_names: Sequence[str] | None = None,
                  title: str = "Precision-recall curve", figsize: tuple[float, float] = (6, 5.5),
                  dpi: int = DEFAULT_DPI) -> Path:
  """Precision-recall curve(s) with AUPRC (average precision) in the legend.

  Drawn as steps where precision P_k holds over (R_{k-1}, R_k], so the area under the drawn curve is exactly
  the reported average precision.

  Inputs as :func:`plot_roc_curve`. For a single curve the no-skill line (precision = prevalence) is drawn.
  """
  curves, skipped = _curves(y_true, scores, class_names, "pr")
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  for label, x, y, area, prevalence in curves:
    ax.step(x, y, where="pre", lw=1.5, label=f"{label} (AUPRC {area:.3f})")
    if len(curves) == 1:
      ax.axhline(prevalence, ls="--", color="gray", lw=1, label=f"no skill ({prevalence:.2f})")
  ax.set_xlim(-0.01, 1.01)
  ax.set_ylim(-0.01, 1.01)
  ax.set_xlabel("recall (sensitivity)")
  ax.set_ylabel("precision (PPV)")
  if len(curves) > 1:
    title += f" - macro AUPRC {np.mean([c[3] for c in curves]):.3f}"
  if skipped:
    title += f"\n(no curve for {', '.join(skipped)}: one class only)"
  ax.set_title(title)
  if curves:
    ax.legend(loc="lower left", fontsize="small")
  else:  # e.g. a tiny split with one class only: say so on the plot rather than leave it blank
    ax.text(0.5, 0.5, "no curve: every class has one label value only", ha="center", va="center", color="gray")
  ax.grid(alpha=0.3)
  return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Regression / EF
# ----------------------------------------------------------------------------------------------------------------


def plot_ef_scatter(ef_true: Any, ef_pred: Any, path: str | Path, *, title: str = "Ejection fraction",
                    units: str = "%", thresholds: Sequence[float] = (), figsize: tuple[float, float] = (6, 6),
                    dpi: int = DEFAULT_DPI) -> Path:
  """Predicted vs. true scatter with the identity line; MAE, RMSE, R2 and n in the title.

  Works for any regression target (set ``title`` / ``units``). ``thresholds`` draws dashed cut-off lines on
  both axes (e.g. ``(50,)`` for reduced EF), which shows the four quadrants of the confusion matrix.
  """
  yt = M._vector(ef_true, "ef_true")
  yp = M._vector(ef_pred, "ef_pred")
  M._same_length(yt, yp, "ef_true", "ef_pred")
  r = M.regression_metrics(yt, yp, bootstrap=0)
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  lo = float(min(yt.min(), yp.min()))
  hi = float(max(yt.max(), yp.max()))
  pad = 0.05 * (hi - lo) if hi > lo else 1.0
  lo, hi = lo - pad, hi + pad
  ax.plot([lo, hi], [lo, hi], ls="--", color="gray", lw=1, label="identity")
  alpha = 0.7 if yt.size < 500 else 0.3
  ax.scatter(yt, yp, s=12, alpha=alpha, edgecolors="none")
  for t in thresholds:
    ax.axvline(t, ls=":", color="tab:red", lw=1)
    ax.axhline(t, ls=":", color="tab:red", lw=1)
  ax.set_xlim(lo, hi)
  ax.set_ylim(lo, hi)
  ax.set_aspect("equal")
  u = f" ({units})" if units else ""
  ax.set_xlabel(f"true{u}")
  ax.set_ylabel(f"predicted{u}")
  r2 = "nan" if math.isnan(r["r2"]) else f"{r['r2']:.3f}"
  ax.set_title(f"{title}\nMAE {r['mae']:.2f}, RMSE {r['rmse']:.2f}, R2 {r2}, n={r['n']}")
  ax.legend(loc="upper left", fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_bland_altman(ef_true: Any, ef_pred: Any, path: str | Path, *, title: str = "Bland-Altman",
                      units: str = "%", figsize: tuple[float, float] = (7, 5), dpi: int = DEFAULT_DPI) -> Path:
  """Bland-Altman plot: difference (pred - true) against the mean of the two, with the mean difference (bias)
  and the 95% limits of agreement (bias +- 1.96 SD of the differences, SD with ddof=1)."""
  yt = M._vector(ef_true, "ef_true")
  yp = M._vector(ef_pred, "ef_pred")
  M._same_length(yt, yp, "ef_true", "ef_pred")
  mean = (yt + yp) / 2.0
  diff = yp - yt
  bias = float(diff.mean())
  sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
  low, high = bias - 1.96 * sd, bias + 1.96 * sd
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  ax.scatter(mean, diff, s=12, alpha=0.7 if yt.size < 500 else 0.3, edgecolors="none")
  ax.axhline(0.0, color="gray", lw=0.8)
  ax.axhline(bias, color="tab:blue", lw=1.5, label=f"mean difference {bias:+.2f}")
  ax.axhline(high, color="tab:red", ls="--", lw=1.2, label=f"+1.96 SD {high:+.2f}")
  ax.axhline(low, color="tab:red", ls="--", lw=1.2, label=f"-1.96 SD {low:+.2f}")
  u = f" ({units})" if units else ""
  ax.set_xlabel(f"mean of predicted and true{u}")
  ax.set_ylabel(f"predicted - true{u}")
  ax.set_title(f"{title}\nbias {bias:+.2f}, 95% limits of agreement [{low:.2f}, {high:.2f}], n={yt.size}")
  ax.legend(loc="upper right", fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Training curves and sweeps
# ----------------------------------------------------------------------------------------------------------------

_TRAIN_PREFIXES = ("train",)
_EVAL_PREFIXES = ("val", "valid", "validation", "eval", "test")
_NOT_METRICS = {"step", "epoch", "time", "timestamp", "wall_time", "elapsed", "elapsed_s"}
# Leaves that are counts or settings rather than metrics worth a curve.
_COUNT_LEAVES = {"n", "n_pos", "n_neg", "n_valid", "tp", "fp", "fn", "tn", "support", "threshold"}
# Validation metrics shown first (in this order) when there are more metrics than panels.
_HEADLINE = ("accuracy", "auroc", "auprc", "mae", "rmse", "r2", "macro_f1", "f1", "balanced_accuracy",
             "auroc_macro_ovr", "auprc_macro_ovr", "log_loss")


def read_metrics_jsonl(path: str | Path) -> list[dict[str, Any]]:
  """Records of a metrics JSONL file (one JSON object per line, each with an integer ``step``).

  Blank lines are ignored. A last line that is cut off (a run killed while writing) is ignored; any other line
  that is not a JSON object with a ``step`` raises UserError naming the file and line.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f"{path}: metrics file not found; point at <workdir>/metrics.jsonl of a training run")
  lines = path.read_text().splitlines()
  records = []
  for i, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError as e:
      if i == len(lines):
        break  # partial write at the end of a killed run
      raise UserError(f"{path} line {i}: not valid JSON ({e.msg}); fix or delete that line") from None
    if not isinstance(rec, dict) or "step" not in rec:
      raise UserError(f"{path} line {i}: each line must be a JSON object with a 'step' field, got {line[:80]!r}")
    records.append(rec)
  return records


def _split_key(key: str, record_split: str | None = None) -> tuple[str, str]:
  """(split, metric name) of a metrics key.

  An explicit prefix wins ('train/loss' -> ('train', 'loss'), 'val_mae' -> ('val', 'mae')); otherwise the
  record's ``split`` field ('loss' in a split="val" record -> ('val', 'loss')); otherwise a key with "loss"
  counts as train and anything else ('lr') has no split: ('', 'lr').
  """
  for sep in ("/", "_", "."):
    head, _, tail = key.partition(sep)
    if tail and head.lower() in _TRAIN_PREFIXES + _EVAL_PREFIXES:
      return head, tail
  if record_split:
    return record_split, key
  if "loss" in key.lower():
    return "train", key
  return "", key


def plot_training_curves(metrics: str | Path | Sequence[Mapping[str, Any]], path: str | Path, *,
                         keys: Sequence[str] | None = None, max_panels: int = 9, title: str | None = None,
                         figsize: tuple[float, float] | None = None, dpi: int = DEFAULT_DPI) -> Path:
  """Training curves from a run's metrics JSONL (or a list of records): one panel per metric against step.

  Records look like echojax.train writes them: ``{"step": 100, "split": "train", "loss": 0.4, ...}`` and
  ``{"step": 100, "split": "val", "loss": 0.5, "mae": 4.1, ...}``. Prefixed keys work too (``train/loss``,
  ``val_mae``, ``eval.auroc``, nested ``{"val": {"mae": 3.1}}``); a key with "loss" and no split counts as train.
  The same metric of different splits shares a panel (train and val loss together). Panel order: losses, then
  headline metrics (accuracy, AUROC, AUPRC, MAE, RMSE, R2, F1, ...), other validation metrics (top-level before
  nested), then the rest (learning rate, throughput); counts (n, tp, support, ...), CI bounds and epoch are not plotted.
  ``keys`` keeps only the named metrics (with or without split prefix). At most ``max_panels`` panels.
  Default figsize: (4.5 * cols, 3.5 * rows) with up to 3 columns.
  """
  records = read_metrics_jsonl(metrics) if isinstance(metrics, (str, Path)) else list(metrics)
  series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
  for rec in records:
    step = rec.get("step")
    if not isinstance(step, (int, float)) or isinstance(step, bool):
      continue
    rec_split = rec.get("split") if isinstance(rec.get("split"), str) else None
    for key, value in M.flatten(rec).items():
      leaf = key.rsplit("/", 1)[-1]
      if (key in _NOT_METRICS or leaf in _COUNT_LEAVES or leaf.endswith(("_ci_low", "_ci_high"))
          or not math.isfinite(value)):
        continue
      split, base = _split_key(key, rec_split)
      if keys is not None and key not in keys and base not in keys:
        continue
      xs, ys = series.setdefault(base, {}).setdefault(split or base, ([], []))
      xs.append(float(step))
      ys.append(value)
  if not series:
    where = metrics if isinstance(metrics, (str, Path)) else "the records"
    raise UserError(f"{where}: no numeric metrics with a 'step' to plot" + (f" among keys {list(keys)}"
                                                                               if keys is not None else ""))

  def order(base: str) -> tuple[int, int, str]:
    has_eval = any(s.lower() in _EVAL_PREFIXES for s in series[base])
    if "loss" in base.lower() and base != "log_loss":
      return 0, 0, base
    if base in _HEADLINE:
      return 1, _HEADLINE.index(base), base
    if has_eval:
      return (2 if "/" not in base else 3), 0, base
    return 4, 0, base

  bases = sorted(series, key=order)[:max_panels]
  cols = min(3, len(bases))
  rows = math.ceil(len(bases) / cols)
  fig = _figure(figsize or (4.5 * cols, 3.5 * rows), dpi)
  axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
  for ax, base in zip(axes, bases):
    for split, (xs, ys) in sorted(series[base].items()):
      marker = "o" if len(xs) <= 30 else None
      label = split if split != base else None
      ax.plot(xs, ys, marker=marker, ms=3, lw=1.2, label=label)
    ax.set_title(base)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if any(s != base for s in series[base]):
      ax.legend(fontsize="small")
  for ax in axes[len(bases):]:
    ax.set_visible(False)
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def plot_metric_vs_param(x: Sequence[Any], y: Sequence[float] | Mapping[str, Sequence[float]], path: str | Path, *,
                         yerr: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                         xlabel: str = "parameter", ylabel: str = "metric", title: str | None = None,
                         point_labels: Sequence[str] | None = None, logx: bool = False,
                         figsize: tuple[float, float] = (6, 4.5), dpi: int = DEFAULT_DPI) -> Path:
  """A metric against a swept parameter (ablations, sweeps, cross-validation means).

  ``x``: numbers (a numeric axis, ``logx`` for learning rates; points joined by lines) or strings (evenly spaced
  categories, points and error bars only).
  ``y``: one sequence, or ``{series name: sequence}`` for several lines; ``yerr`` the same shape (e.g. the std
  over folds from ``summarize_folds``) or (2, N) distances below/above each value (a confidence interval), drawn
  as error bars. ``point_labels`` annotates each point of the first
  series (e.g. run names). NaN values (failed runs) leave gaps.
  """
  xs = list(x)
  if not xs:
    raise UserError("x: no values to plot; give one x value per run")
  numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in xs)
  xpos = np.asarray(xs, dtype=np.float64) if numeric else np.arange(len(xs), dtype=np.float64)
  ys = dict(y) if isinstance(y, Mapping) else {ylabel: y}
  errs = dict(yerr) if isinstance(yerr, Mapping) else ({next(iter(ys)): yerr} if yerr is not None else {})
  for name, vals in list(ys.items()) + list(errs.items()):
    n = np.shape(vals)[-1] if np.ndim(vals) == 2 else len(vals)  # (2, N) intervals: N pairs
    if n != len(xs):
      raise UserError(f"series {name!r} has {n} values but x has {len(xs)}; give one value per x")
  if point_labels is not None and len(point_labels) != len(xs):
    raise UserError(f"point_labels has {len(point_labels)} labels but x has {len(xs)}")
  fig = _figure(figsize, dpi)
  ax = fig.subplots()
  for i, (name, vals) in enumerate(ys.items()):
    v = np.asarray([np.nan if val is None else val for val in vals], dtype=np.float64)
    e = errs.get(name)
    if e is not None:  # (N,) symmetric, or (2, N) below/above (e.g. a bootstrap interval around the value)
      two_sided = np.ndim(e) == 2
      e = np.asarray([[np.nan if val is None else val for val in r] for r in (e if two_sided else [e])],
                     dtype=np.float64)
      e = e if two_sided else e[0]
    ax.errorbar(xpos, v, yerr=e, marker="o", ms=4, lw=1.5, capsize=3 if e is not None else 0,
                ls="-" if numeric else "none",  # categories (ablation settings) have no order to connect
                label=name if len(ys) > 1 else None)
    if i == 0 and point_labels is not None:
      for px, py, lab in zip(xpos, v, point_labels):
        if math.isfinite(py):
          ax.annotate(str(lab), (px, py), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
  if not numeric:
    ax.set_xticks(xpos, [str(v) for v in xs], rotation=30 if len(xs) > 4 else 0,
                  ha="right" if len(xs) > 4 else "center")
  elif logx:
    ax.set_xscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title or f"{ylabel} vs {xlabel}")
  if len(ys) > 1:
    ax.legend(fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, path)
