"""Table: EchoSDNet's published results (single- vs dual-screen frames, UNITY): per-class precision / recall /
F1, accuracy, test loss, ROC-AUC, PR-AUC and the confusion matrix, each number with its bootstrap 95% CI.

    python -m launch.sweep echosdnet_table --local --variant demo    # phantoms, from scratch, ~4 CPU minutes
    python -m launch.sweep echosdnet_table --local --variant full    # the paper's recipe (--config.init.imagenet
                                                                     # via the run's overrides: see below)

One run of ``experiments/echosdnet.py``; ``table.md`` has the publication's rows (Precision, Recall, F1-Score,
Accuracy, Test Loss, ROC-AUC, PR-AUC) and columns (Single-View, Dual-View, Overall = the macro average), then the
confusion matrix as counts (rows = true class); ``table.png`` draws the rates with their intervals and the run's
``eval_test/confusion_matrix.png`` is the matrix. ROC-AUC and PR-AUC are those of the dual class's probability
(binary: the single class's ROC-AUC is the same number). For the paper's recipe the ImageNet weights come from a
local file: ``ECHOJAX_SWEEP_IMAGENET=/path/resnet50_notop.h5`` adds ``--config.init.imagenet`` to the run.
"""

from __future__ import annotations

import os

from echojax.data.labels import UNITY_CLASSES
from launch.tables import Cell, Table, lookup

PUBLISHED = {"precision": (1.00, 0.99, 0.99), "recall": (0.99, 1.00, 0.99), "f1": (1.00, 0.99, 0.99),
             "accuracy": 0.9948, "loss": 0.0155, "roc_auc": 1.00, "pr_auc": 1.00}


def get_sweep(variant: str) -> dict:
  overrides = {}
  if os.environ.get("ECHOJAX_SWEEP_IMAGENET"):
    overrides["init.imagenet"] = os.environ["ECHOJAX_SWEEP_IMAGENET"]
  return {"config": "echosdnet:{variant}", "runs": [{"name": "echosdnet", "overrides": overrides, "x": "EchoSDNet"}],
          "metric": "metrics.accuracy", "extra_metrics": ["metrics.macro_f1", "metrics.log_loss"],
          "x_label": "model", "split": "test"}


def table(runs, sweep) -> Table:
  (run,) = runs
  m = run.metrics(sweep["split"])
  single, dual = UNITY_CLASSES
  rows = []
  for key, label, macro in (("precision", "Precision", "macro_precision"), ("recall", "Recall", "macro_recall"),
                            ("f1", "F1-Score", "macro_f1")):
    rows.append([label, lookup(m, f"per_class.{single}.{key}"), lookup(m, f"per_class.{dual}.{key}"),
                 lookup(m, macro), "/".join(f"{v:.2f}" for v in PUBLISHED[key])])
  rows.append(["Accuracy", "", "", lookup(m, "accuracy"), f"{PUBLISHED['accuracy']:.4f}"])
  rows.append(["Test Loss", "", "", Cell(m["log_loss"]), f"{PUBLISHED['loss']:.4f}"])
  rows.append(["ROC-AUC", "", "", lookup(m, f"per_class.{dual}.auroc"), f"{PUBLISHED['roc_auc']:.2f}"])
  rows.append(["PR-AUC", "", "", lookup(m, f"per_class.{dual}.auprc"), f"{PUBLISHED['pr_auc']:.2f}"])
  cm = m["confusion_matrix"]
  for i, name in enumerate((single, dual)):
    rows.append([f"confusion: true {name}", cm[i][0], cm[i][1], sum(cm[i]), ""])
  n, wrong = sum(map(sum, cm)), sum(cm[i][j] for i in range(2) for j in range(2) if i != j)
  return Table(title=f"EchoSDNet ({sweep['config']}), {sweep['split']} split: {n} frames, {n - wrong} correct, "
                     f"{wrong} misclassified (bootstrap 95% CIs)",
               header=["Metric", "Single-View", "Dual-View", "Overall", "published (single/dual/overall)"],
               rows=rows, plot=["Single-View", "Dual-View", "Overall"], ylabel="value",
               notes=["Overall precision / recall / F1 = the macro average over the two classes",
                      "confusion rows = true class, columns = predicted (Single-View, Dual-View), Overall = row total",
                      f"the confusion matrix as a picture: {run.eval_dir(sweep['split']) / 'confusion_matrix.png'}"])
