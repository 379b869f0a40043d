"""The schema of a run config: every field and its default, in one place.

An experiment file (``experiments/NAME.py``, ``get_config(arg)``) states only what makes that experiment itself;
``echojax.config.load_config`` lays it over :data:`DEFAULTS` with :func:`complete`. A key the schema does not know,
in a config file or an override, is an error naming the nearest known key; every field the schema knows can be
overridden (``--config.evals.val.split=test``, ``--config.data.size=64``). A few blocks are open (:class:`Open`): their keys depend on
something else (``task`` on ``task.kind``, ``model.kwargs`` on the model, ``data.augment`` checked by
``echojax.data.augment``), so any key goes there. ``evals`` is a named set of evaluations (:data:`EVAL_DEFAULTS`
per entry), as big_vision configures its evaluators: validation, an end-of-training test and an external dataset
are the same mechanism.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any, Mapping

import ml_collections

from echojax.errors import UserError


class Open(dict):
  """A block whose keys the schema does not fix (any key is accepted; the value is the default)."""


class Entries(dict):
  """A named set of sub-blocks, each completed from the same defaults (``evals``)."""

  def __init__(self, defaults: Mapping[str, Any], initial: Mapping[str, Mapping[str, Any]]):
    super().__init__(initial)
    self.entry_defaults = dict(defaults)


def _data_defaults(name: str | None = None) -> dict[str, Any]:
  """The data block: the pipeline's options, plus the fields of a custom loader registered for dataset ``name``."""
  from echojax.data import datasets
  from echojax.data.options import DEFAULTS

  return {**DEFAULTS, "augment": Open(), **datasets.custom_options(name)}


#: one evaluation of a run (an entry of ``config.evals``)
EVAL_DEFAULTS: dict[str, Any] = {
    "split": "val",  # the split of config.data (or of ``data``'s dataset) to score
    "every_steps": 0,  # during training, every N steps ...
    "every_epochs": 0.0,  # ... or every N epochs (both 0: not during training)
    "clips": "one",  # "one" clip per video, or "all" clips averaged (test-time augmentation)
    "pick_best": False,  # this evaluation keeps the best checkpoint and drives early stopping (at most one)
    "at_end": False,  # after training, score the best checkpoint and print evaluate's headline
    "bootstrap": 0,  # bootstrap resamples for 95% CIs (at_end evaluations write evaluate's outputs)
    "data": Open(),  # overrides of config.data for this evaluation (e.g. an external dataset's name/data_dir)
}


def defaults(data_name: str | None = None) -> dict[str, Any]:
  """The whole schema with its defaults (a fresh copy); ``data_name`` adds a custom loader's data fields."""
  return {
      "seed": 0,
      "task": Open({"kind": "classification"}),  # fields by kind: see echojax/tasks
      "data": _data_defaults(data_name),
      # dtype: compute dtype, float32 or bfloat16 (parameters, optimizer state, batch-norm statistics and the loss
      # stay float32: mixed precision for GPUs/TPUs)
      "model": {"name": "", "kwargs": Open(), "dtype": "float32"},
      "optim": {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant",
                "decay_every_epochs": 0.0, "decay_factor": 0.1, "warmup_steps": 0, "grad_clip": 0.0,
                "trainable": "", "l1": 0.0, "l1_on": ""},
      "train": {"num_steps": 0, "num_epochs": 0.0, "steps_per_epoch": 0, "log_every": 50, "checkpoint_every": 0,
                "checkpoint_every_epochs": 1.0, "keep_checkpoints": 2, "early_stopping_patience": 0,
                # a jax.profiler trace of profile_steps steps (0 = none) into <workdir>/profile/, starting
                # profile_start steps after the run (or resume) starts, so compilation is not in it
                "profile_steps": 0, "profile_start": 5},
      # shared by every evaluation; batch_size 0 = data.batch_size
      "eval": {"batch_size": 0, "best_metric": "", "best_mode": "", "aux_keys": None},
      "evals": Entries(EVAL_DEFAULTS, {"val": {"split": "val", "every_epochs": 1.0, "pick_best": True}}),
      "mesh": [("data", -1)],
      "sharding": {"rules": [(".*", "replicate")]},
      "init_from": None,
      # reinit: regex over '/'-joined parameter paths that keep their fresh initialisation when init_from loads a
      # run (a new head, new layers); every other parameter must be in the checkpoint with the same shape
      "init": {"imagenet": None, "reinit": ""},
      "config_name": "",
      "config_spec": "",
  }


def _nearest(key: str, options) -> str:
  near = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
  return f" Did you mean {near[0]!r}?" if near else ""


def _plain(x: Any) -> Any:
  if isinstance(x, ml_collections.ConfigDict):
    return x.to_dict()
  return x


def _merge(schema: Any, given: Any, where: str) -> Any:
  given = _plain(given)
  if isinstance(schema, Entries):
    given = {} if given is None else given
    if not isinstance(given, Mapping):
      raise UserError(f"config field {where} must be a dict of named entries, got {given!r}")
    out = {}
    for name in list(schema) + [n for n in given if n not in schema]:
      base = {**schema.entry_defaults, **(schema.get(name) or {})}
      out[name] = _merge({k: (Open(v) if isinstance(v, Open) else v) for k, v in base.items()},
                         given.get(name, {}), f"{where}.{name}")
    return out
  if isinstance(schema, Open):
    if given is None:
      return dict(schema)
    if not isinstance(given, Mapping):
      raise UserError(f"config field {where} must be a dict, got {given!r}")
    return {**schema, **dict(given)}
  if isinstance(schema, dict):
    if given is None:
      given = {}
    if not isinstance(given, Mapping):
      raise UserError(f"config field {where} must be a group of settings, got {given!r}")
    unknown = [k for k in given if k not in schema]
    if unknown:
      k = unknown[0]
      raise UserError(f"unknown config field {where}.{k}.{_nearest(k, schema)} Known fields of {where}: "
                      f"{', '.join(sorted(schema))}")
    return {k: (_merge(v, given[k], f"{where}.{k}") if k in given else _merge(v, None, f"{where}.{k}")
                if isinstance(v, dict) else copy.deepcopy(v)) for k, v in schema.items()}
  return given


def complete(cfg: ml_collections.ConfigDict | Mapping[str, Any], where: str = "config") -> ml_collections.ConfigDict:
  """``cfg`` (what a config file states) laid over the defaults; unknown keys are errors naming the nearest."""
  given = _plain(cfg)
  schema = defaults((given.get("data") or {}).get("name"))
  unknown = [k for k in given if k not in schema]
  if unknown:
    k = unknown[0]
    raise UserError(f"unknown config field {k!r} in {where}.{_nearest(k, schema)} Top-level fields: "
                    f"{', '.join(sorted(schema))}")
  merged = {k: _merge(v, given[k], k) if k in given else _merge(v, None, k) if isinstance(v, dict)
            else copy.deepcopy(v) for k, v in schema.items()}
  return ml_collections.ConfigDict(merged)


def new_entry(path: list[str]) -> dict[str, Any] | None:
  """The defaults of a new named entry at ``path`` (e.g. ["evals", "external"]), or None when ``path`` is not an
  entry of a named set."""
  node: Any = defaults()
  for part in path[:-1]:
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  if not isinstance(node, Entries):
    return None
  return {k: (dict(v) if isinstance(v, dict) else v) for k, v in node.entry_defaults.items()}


def is_open(path: list[str]) -> bool:
  """Whether the block at ``path`` (e.g. ["model", "kwargs"]) takes keys the schema does not fix."""
  node: Any = defaults()
  for part in path:
    if isinstance(node, Entries):
      node = {**node.entry_defaults, **(node.get(part) or {})}
      continue
    if not isinstance(node, dict) or part not in node:
      return False
    node = node[part]
  return isinstance(node, (Open, Entries))


def fill_defaults(cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A stored run config (``config.json``) with the fields it lacks filled from the defaults, and nothing
  rejected: runs written by older versions keep fields the schema no longer has (they are ignored)."""

  def fill(schema: Any, given: Any) -> Any:
    if isinstance(schema, Entries):
      given = dict(given or {})
      return {n: fill({**schema.entry_defaults, **(schema.get(n) or {})}, given.get(n, {}))
              for n in (list(given) if given else list(schema))}
    if isinstance(schema, dict) and (given is None or isinstance(given, Mapping)):
      given = dict(given or {})
      out = {k: fill(v, given[k]) if k in given else copy.deepcopy(dict(v) if isinstance(v, dict) else v)
             for k, v in schema.items()}
      out.update({k: v for k, v in given.items() if k not in schema})
      return out
    return given

  given = _plain(cfg)
  return ml_collections.ConfigDict(fill(defaults((given.get("data") or {}).get("name")), given))
