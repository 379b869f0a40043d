"""Sweep: the Enhanced ResNet50's ablation on ECG-image classification (ecg_image_resnet50), one module off per run.

    python -m launch.sweep ecg_image_ablation --local --variant smoke    # seconds per run (tests)
    python -m launch.sweep ecg_image_ablation --local --variant demo     # learns; a few CPU minutes per run
    python -m launch.sweep ecg_image_ablation --print                    # full-size commands for a cluster

Runs: ``full`` (every enhancement, focal loss), then each enhancement removed in turn (``no_multiscale``,
``no_pyramid``, ``no_attention``, ``no_calibration``, ``no_fusion``: ``model.kwargs.<switch>=false``),
``no_focal`` (the full model with cross-entropy), ``plain_head`` (every module off, the dense head kept,
cross-entropy: the ``plain`` config argument) and ``plain`` (a plain ResNet50: every module off, the linear
classifier of torchvision's ResNet instead of the dense head, cross-entropy). The table reports test macro-F1
(the primary metric, plotted) and accuracy, macro specificity and macro one-vs-rest AUROC, each with evaluate's
bootstrap 95% CI where it gives one. None of the published versions of this model has such a table.

``ECHOJAX_SWEEP_RUNS`` (comma-separated run names) keeps only those runs, for quick checks (launch.sweep).
"""

from __future__ import annotations

from experiments.ecg_image_resnet50 import SWITCHES


def get_sweep(variant: str) -> dict:
  runs = [{"name": "full", "overrides": {}, "x": "full"}]
  runs += [{"name": f"no_{s}", "overrides": {f"model.kwargs.{s}": False}, "x": f"-{s}"} for s in SWITCHES]
  runs.append({"name": "no_focal", "overrides": {"task.loss": "cross_entropy"}, "x": "-focal"})
  plain = {f"model.kwargs.{s}": False for s in SWITCHES}
  plain["task.loss"] = "cross_entropy"
  runs.append({"name": "plain_head", "overrides": dict(plain), "x": "plain + dense head"})
  plain["model.kwargs.head_units"] = "[]"
  runs.append({"name": "plain", "overrides": plain, "x": "plain ResNet50"})
  return {"config": "ecg_image_resnet50:{variant}", "runs": runs, "metric": "metrics.macro_f1",
          "extra_metrics": ["metrics.accuracy", "metrics.macro_specificity", "metrics.auroc_macro_ovr"],
          "x_label": "setting", "split": "test"}
