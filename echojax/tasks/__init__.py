"""Tasks: what a model predicts, its loss and its metrics. The trainer and evaluator are task-agnostic.

``get_task(config) -> Task`` picks the task from ``config.task.kind``:

* ``classification``: softmax cross-entropy over ``config.task.num_classes`` (optional class weights, label
  smoothing), or ``loss="focal"`` (``focal_gamma``, per-class ``focal_alpha`` or ``"balanced"``); batch target
  ``label``.
* ``ef_regression``: MSE on ejection fraction (batch target ``ef``); the output bias starts at the train-split EF
  mean (as echonet/dynamic does) unless ``config.task.output_bias`` gives it.
* ``ef_classification``: EF >= ``config.task.threshold`` (50) vs below, 2-way softmax with optional class weights
  from train-split frequencies; target computed from ``ef`` in the batch.
"""

from __future__ import annotations

import ml_collections

from echojax.errors import UserError
from echojax.tasks.base import Task
from echojax.tasks.classification import ClassificationTask
from echojax.tasks.ef import EFClassificationTask, EFRegressionTask

TASKS = {
    "classification": ClassificationTask,
    "ef_regression": EFRegressionTask,
    "ef_classification": EFClassificationTask,
}


def get_task(config: ml_collections.ConfigDict) -> Task:
  kind = config.task.kind
  if kind not in TASKS:
    raise UserError(f"config.task.kind={kind!r} is unknown; available: {', '.join(TASKS)}")
  return TASKS[kind](config.task)


__all__ = ["Task", "get_task", "TASKS"]
