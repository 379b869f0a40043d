"""The Task interface shared by every task kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np


class Task:
  """Output head size + loss (jitted) + per-item predictions + host-side metrics, plots and CSV columns.

  Lifecycle: ``prepare(train_targets)`` once with the train split's targets (class frequencies, target mean), then
  ``init_params(params)`` to adjust fresh parameters (e.g. output bias), then ``loss`` inside the train step.
  """

  target_keys: tuple[str, ...] = ()  # batch keys the task reads (targets), gathered on host by evaluate
  best_metric: str = "loss"  # validation metric that picks the best checkpoint
  best_mode: str = "min"

  def __init__(self, cfg: ml_collections.ConfigDict):
    self.cfg = cfg

  @property
  def num_outputs(self) -> int:
    raise NotImplementedError

  def prepare(self, train_targets: dict[str, np.ndarray]) -> None:
    """Uses train-split targets (numpy, one entry per record) to set data-dependent constants."""

  def needs_train_targets(self) -> bool:
    return False

  def prepared_constants(self) -> dict[str, Any]:
    """Config fields (under config.task) that pin what ``prepare`` computed, so reruns skip it."""
    return {}

  def init_params(self, params: Any) -> Any:
    return params

  def loss(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    raise NotImplementedError

  def decode(self, outputs: jax.Array) -> dict[str, jax.Array]:
    """Per-clip predictions (inside jit); evaluate averages them over the clips of each video."""
    raise NotImplementedError

  def metrics(self, preds: dict[str, np.ndarray], targets: dict[str, np.ndarray], *,
              bootstrap: int = 0) -> dict[str, Any]:
    raise NotImplementedError

  def csv_columns(self, preds: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns of the per-video predictions CSV (besides index / file name)."""
    raise NotImplementedError

  def plots(self, preds: dict[str, np.ndarray], targets: dict[str, np.ndarray], metrics: dict[str, Any],
            out_dir: Path) -> list[Path]:
    """Writes the task's PNG plots (echojax.plots) into ``out_dir``; returns their paths."""
    return []


def find_head_bias(params: Any, size: int) -> tuple[str, ...]:
  """Path of the output-layer bias: a ``bias`` of shape (size,) under a module whose name contains "head"
  (the models' convention), else the only bias of that shape."""
  from echojax.sharding import path_str

  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = path_str(path)
    if name.endswith("bias") and tuple(leaf.shape) == (size,):
      found.append((name, path))
  heads = [f for f in found if "head" in f[0].lower()]
  pick = heads if heads else found
  if len(pick) != 1:
    raise ValueError(f"cannot find the output bias of shape ({size},) among {[f[0] for f in found]}; "
                     "name the model's last Dense 'head'")
  return pick[0][1]


def set_leaf(tree: Any, path, value) -> Any:
  def f(p, leaf):
    return value.astype(leaf.dtype).reshape(leaf.shape) if p == path else leaf

  return jax.tree_util.tree_map_with_path(f, tree)
