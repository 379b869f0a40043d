"""The run layer: a training run as the trainer, evaluate, predict and export all see it.

    run = Run.load("workdirs/echonet_ef_demo")        # config.json, task, model, a mesh over this machine
    step, which, variables = run.restore("best", x_shape=(8, 32, 112, 112, 3))  # sharded on run.mesh
    step, which, variables = run.restore("auto")                                  # numpy, any device count
    out, aux = eval_forward(run.model, run.config)(variables, batch)  # as evaluate's jitted step applies it

The trainer (``echojax.train``) keeps the loop and the optimizer; everything else about a run lives here: its
config file, the model built from it, the model's input (device-side normalisation, ``mask=``, per-frame pooling),
the model applied in eval mode (``eval_forward``), the data loader for a split, and the one restore path (``echojax.checkpoint.restore_tree``). evaluate, predict and
export import this module, never ``train``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from echojax import config as config_lib
from echojax import paths, sharding, tasks
from echojax.errors import UserError

log = logging.getLogger("echojax.run")

CONFIG_FILE = "config.json"


# ----------------------------------------------------------------------------------------------------------------
# Process setup shared by every command


class _StderrHandler(logging.StreamHandler):
  """Writes to whatever ``sys.stderr`` is at emit time (stays valid when stderr is swapped, e.g. by tests)."""

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, _value):
    pass


def setup_logging() -> None:
  """INFO logs of echojax.* on stderr (libraries may already have configured the root logger)."""
  logger = logging.getLogger("echojax")
  logger.setLevel(logging.INFO)
  if not logger.handlers:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


def enable_compilation_cache() -> None:
  """Persistent XLA compilation cache (on by default) in ``echojax.paths.compilation_cache_dir()``."""
  jax.config.update("jax_compilation_cache_dir", str(paths.compilation_cache_dir()))


# ----------------------------------------------------------------------------------------------------------------
# Config -> model, input, loader


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
  """The run's ``config.json`` (what its weights were trained with), with fields it lacks (a run written by an
  older version) filled from the schema's defaults."""
  from echojax import schema

  path = Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise UserError(f"{path} not found: --workdir must be a training run folder (python -m echojax.train "
                    f"--config NAME --workdir DIR writes it)")
  return schema.fill_defaults(config_lib.from_json(path.read_text()))


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(config: ml_collections.ConfigDict, task: tasks.Task):
  """The registered model ``config.model.name`` with ``config.model.kwargs``, the task's output size and the
  compute dtype ``config.model.dtype`` (every registered model takes ``dtype``; its parameters stay float32)."""
  from echojax import models

  kwargs = dict(config.model.kwargs)
  kwargs.setdefault("num_classes", task.num_outputs)  # every registered model names its output size num_classes
  name = config.model.get("dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise UserError(f"config field model.dtype={name!r}; use one of {', '.join(COMPUTE_DTYPES)}")
  if name != "float32":
    kwargs["dtype"] = COMPUTE_DTYPES[name]
  return models.get_model(config.model.name, **kwargs)


def input_key(config) -> str:
  return config.data.input_key


def make_model_input(config) -> Callable[[dict], jax.Array]:
  """batch -> the model's input array. With ``data.normalize='device'`` the pipeline ships uint8 clips and they
  are normalised here, inside the jitted step, with the prepared data's train-split mean/std."""
  from echojax.data.pipeline import input_normalization

  key = input_key(config)
  stats = input_normalization(config.data)
  if stats is None:
    return lambda batch: batch[key]
  mean, inv_std = jnp.asarray(stats[0], jnp.float32), jnp.asarray(1.0 / np.asarray(stats[1]), jnp.float32)
  return lambda batch: (batch[key].astype(jnp.float32) - mean) * inv_std


def model_kwargs(model, batch: dict) -> dict:
  """``mask=`` (B, T) for models whose ``__call__`` takes it (padded frames excluded from their pooling)."""
  if "mask" in batch and "mask" in inspect.signature(type(model).__call__).parameters:
    return {"mask": batch["mask"]}
  return {}


def pool_outputs(out: jax.Array, batch: dict) -> jax.Array:
  """Per-frame model outputs (B, T, K) -> per-clip (B, K) by the mean over valid frames (``mask``).

  For a per-frame 2D backbone with a linear head this equals temporal average pooling of the features followed by
  the head (the mean commutes with the affine head). Per-clip outputs pass through unchanged. Outputs of a bfloat16
  model (``config.model.dtype``) become float32 here, so losses and metrics are float32."""
  if jnp.issubdtype(out.dtype, jnp.floating):
    out = out.astype(jnp.float32)
  if out.ndim != 3:
    return out
  mask = batch.get("mask")
  if mask is None or mask.shape != out.shape[:2]:
    return jnp.mean(out, axis=1)
  w = mask.astype(out.dtype)[..., None]
  return jnp.sum(out * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def numeric(batch: dict) -> dict:
  """The array entries of a batch (drops strings such as file names, which never go to the device)."""
  return {k: v for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}


def eval_forward(model, config) -> Callable[[dict, dict], tuple[jax.Array, Any]]:
  """``forward(variables, batch) -> (per-clip outputs, aux)``: the model in eval mode on a batch as the loaders
  give it (model input, ``mask=``, per-frame outputs pooled). evaluate's jitted step is built on it."""
  model_input = make_model_input(config)

  def forward(variables: dict, batch: dict) -> tuple[jax.Array, Any]:
    out, aux = model.apply(variables, model_input(batch), train=False, **model_kwargs(model, batch))
    return pool_outputs(out, batch), aux

  return forward


def make_loader(config: ml_collections.ConfigDict, split: str, *, train: bool, data_cfg=None):
  """The loader of ``split``: the dataset's registered loader (``echojax.data.datasets.register_loader``, e.g.
  an in-memory dataset), else the prepared-data pipeline."""
  from echojax.data import datasets, pipeline

  data_cfg = data_cfg if data_cfg is not None else config.data
  make = datasets.custom_loader(data_cfg.get("name", None)) or pipeline.make_loader
  return make(data_cfg, split, train=train, seed=config.seed, process_index=jax.process_index(),
              process_count=jax.process_count())


def eval_data_cfg(config: ml_collections.ConfigDict, clips: Any, data: dict | None = None) -> ml_collections.ConfigDict:
  """config.data with the eval batch size, the clip setting (``clips``: "one" or "all") and an evaluation's own
  ``data`` overrides (``config.evals.<name>.data``, e.g. another dataset's name and data_dir)."""
  out = ml_collections.ConfigDict(config.data.to_dict())
  unknown = sorted(set(data or {}) - set(out))
  if unknown:
    raise UserError(f"evaluation data overrides {unknown} are not fields of config.data ({', '.join(sorted(out))})")
  out.update(dict(data or {}))
  out.batch_size = int(config.eval.batch_size)
  if clips is not None:
    out.clips = clips
  return out


def variable_shardings(abstract: dict, mesh, rules) -> dict:
  """NamedShardings of ``params`` / ``batch_stats`` by the config's rules (paths like "conv1/kernel")."""
  return {k: sharding.param_shardings(abstract[k], mesh, rules) for k in ("params", "batch_stats")}


def abstract_variables(model, task: tasks.Task, x_shape: tuple[int, ...], seed: int = 0) -> dict:
  """ShapeDtypeStructs of the model's ``params`` / ``batch_stats`` for inputs of ``x_shape`` (no compile)."""

  def init():
    variables = model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed + 1)},
                           jnp.zeros(x_shape, jnp.float32), train=False)
    return {"params": task.init_params(variables["params"]), "batch_stats": variables.get("batch_stats", {})}

  return jax.eval_shape(init)


# ----------------------------------------------------------------------------------------------------------------
# A run


@dataclasses.dataclass
class Run:
  """A training run's workdir with its config, task, model and a mesh over this machine's devices."""

  workdir: Path
  config: ml_collections.ConfigDict
  task: tasks.Task
  model: Any
  mesh: Any

  @classmethod
  def load(cls, workdir: str | Path) -> "Run":
    """The run in ``workdir``: its ``config.json`` with ``eval.batch_size`` rounded up to a multiple of this
    machine's device count, and a mesh over those devices (the run's own mesh when it fits here, else
    data-parallel over all of them)."""
    workdir = Path(workdir)
    config = read_config(workdir)
    enable_compilation_cache()
    try:
      mesh = sharding.make_mesh(config.mesh)
    except UserError:
      mesh = sharding.make_mesh([("data", -1)])
    with config.unlocked():
      n = mesh.size
      config.eval.batch_size = int(math.ceil(config.eval.batch_size / n) * n)
    task = tasks.get_task(config)
    return cls(workdir, config, task, build_model(config, task), mesh)

  def shardings(self, x_shape: tuple[int, ...]) -> dict:
    """Variable shardings on this run's mesh for inputs of ``x_shape``."""
    abstract = abstract_variables(self.model, self.task, tuple(x_shape), int(self.config.seed))
    return variable_shardings(abstract, self.mesh, [tuple(r) for r in self.config.sharding.rules])

  def restore(self, checkpoint: str = "best", x_shape: tuple[int, ...] | None = None) -> tuple[int, str, dict]:
    """(step, "best"|"latest", {"params", "batch_stats"}) of the ``checkpoint`` (best / latest / auto): jax.Arrays
    sharded on this run's mesh when ``x_shape`` (the model input's batch shape) is given, else numpy arrays."""
    from echojax.checkpoint import WEIGHTS, Checkpointer, abstract_like

    target = None
    if x_shape is not None:
      abstract = abstract_variables(self.model, self.task, tuple(x_shape), int(self.config.seed))
      target = abstract_like(abstract, self.shardings(x_shape))
    ckpt = Checkpointer(self.workdir, read_only=True)
    try:
      r = ckpt.restore(checkpoint, WEIGHTS, target)
    finally:
      ckpt.close()
    log.info("restored %s checkpoint step %d from %s", r.which, r.step, self.workdir)
    return r.step, r.which, r.tree

  def loader(self, split: str, clips: Any = "all", data: dict | None = None):
    """The evaluation loader of ``split`` (eval batch size, ``clips``, ``data`` overrides of config.data)."""
    return make_loader(self.config, split, train=False, data_cfg=eval_data_cfg(self.config, clips, data))
