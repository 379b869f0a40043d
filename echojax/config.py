"""Config system: finds ``experiments/NAME.py``, calls ``get_config(arg)``, applies typed overrides, locks.

A config spec is ``NAME[:ARG]`` where NAME is a file in ``experiments/`` (or a path to any ``.py`` file that
defines ``get_config``) and ARG is the string handed to ``get_config``, e.g. ``smoke``, ``demo`` or
``model=resnet18,size=56,weighted``. ``parse_arg`` turns ARG into a typed ConfigDict against defaults, so every
experiment file parses its arguments the same way (big_vision style).

A config file states only what differs from the schema's defaults (``echojax.schema``); ``load_config`` completes it,
so an unknown key in a file is an error naming the nearest known key. Overrides ``optim.lr=3e-4`` are typed by the
type of the field they replace (any schema field, including optional ones such as ``data.size``); a key that
does not exist is an error that names the nearest valid key, except inside open blocks (``model.kwargs``,
``data.augment``, ``task``), where an override may add a key.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Iterable

import ml_collections

from echojax.errors import UserError
from echojax.paths import REPO_ROOT

EXPERIMENTS_DIR = REPO_ROOT / "experiments"


def list_configs() -> list[str]:
  """Names of the experiment files in experiments/ (usable as ``--config NAME``)."""
  return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))


def _convert(text: str, like: Any, what: str) -> Any:
  """Parses ``text`` into the type of ``like`` (the existing value); ``what`` names the field for errors."""
  if isinstance(like, bool):
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on", "t", "y"):
      return True
    if low in ("0", "false", "no", "off", "f", "n"):
      return False
    raise UserError(f"{what}: expected true/false, got {text!r}")
  if isinstance(like, (int, float)) and not isinstance(like, bool):
    try:
      value = float(text) if isinstance(like, float) else int(text)
    except ValueError:
      try:  # "1e3" for an int field is fine when it is integral
        value = float(text)
        if isinstance(like, int) and value != int(value):
          raise ValueError
        value = type(like)(value)
      except ValueError:
        raise UserError(f"{what}: expected a{'n int' if isinstance(like, int) else ' float'}, got {text!r}") from None
    return value
  if isinstance(like, str):
    return text
  # None / list / tuple / dict: a python literal, else the raw string.
  if text.strip().lower() == "none":
    return None
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  if isinstance(like, tuple) and isinstance(value, list):
    value = tuple(value)
  return value


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config argument string ``"smoke"`` / ``"model=resnet18,size=56,weighted"`` against ``defaults``.

  A bare word sets a bool default to True; ``key=value`` is typed by the default's type. Unknown keys are errors
  that list the allowed ones. Returns a ConfigDict with every default (overridden where given).
  """
  out = dict(defaults)
  for piece in (arg or "").split(","):
    piece = piece.strip()
    if not piece:
      continue
    key, eq, text = piece.partition("=")
    key = key.strip()
    if key not in defaults:
      near = difflib.get_close_matches(key, list(defaults), n=1)
      hint = f" Did you mean {near[0]!r}?" if near else ""
      raise UserError(f"unknown config argument {key!r} in {arg!r}.{hint} Allowed: {', '.join(defaults)}")
    if not eq:
      if not isinstance(defaults[key], bool):
        raise UserError(f"config argument {key!r} needs a value: write {key}=VALUE (in {arg!r})")
      out[key] = True
    else:
      out[key] = _convert(text, defaults[key], f"config argument {key!r}")
  return ml_collections.ConfigDict(out)


def _load_module(name: str):
  path = Path(name)
  if name.endswith(".py"):
    if not path.is_file():
      raise UserError(f"config file {name} not found; give a path to a .py file with get_config(arg)")
  else:
    path = EXPERIMENTS_DIR / f"{name}.py"
    if not path.is_file():
      near = difflib.get_close_matches(name, list_configs(), n=1)
      hint = f" Did you mean {near[0]!r}?" if near else ""
      raise UserError(f"unknown config {name!r} (no file {path}).{hint} Available: {', '.join(list_configs())}")
  spec = importlib.util.spec_from_file_location(f"echojax_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses (flax modules) in config files look themselves up here
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise UserError(f"config file {path} has no get_config(arg) function")
  return module


def flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All dotted keys of a ConfigDict (leaves and sub-dicts)."""
  keys = []
  for k, v in cfg.items():
    keys.append(prefix + k)
    if isinstance(v, ml_collections.ConfigDict):
      keys.extend(flat_keys(v, prefix + k + "."))
  return keys


def apply_override(cfg: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets dotted ``key`` to ``text`` parsed as the type of the current value; unknown keys name the nearest one."""
  from echojax import schema

  parts = key.split(".")
  node = cfg
  for i, part in enumerate(parts):
    if isinstance(node, ml_collections.ConfigDict) and part not in node:
      if i == len(parts) - 1 and schema.is_open(parts[:-1]):
        with node.unlocked():
          node[part] = _convert(text, None, f"--config.{key}")
        return
      entry = schema.new_entry(parts[:i + 1])  # a new evaluation: --config.evals.external.split=test
      if entry is not None and i < len(parts) - 1:
        with node.unlocked():
          node[part] = ml_collections.ConfigDict(entry)
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      near = difflib.get_close_matches(key, flat_keys(cfg), n=1, cutoff=0.5)
      hint = f" Did you mean --config.{near[0]}?" if near else ""
      raise UserError(f"unknown override key --config.{key}.{hint}")
    if i < len(parts) - 1:
      node = node[part]
  old = node[parts[-1]]
  if isinstance(old, ml_collections.ConfigDict):
    raise UserError(f"--config.{key} is a group of settings; set one of its fields, e.g. --config.{key}."
                    f"{next(iter(old.keys()), 'x')}=...")
  value = _convert(text, old, f"--config.{key}")
  with node.unlocked():
    node[parts[-1]] = value


def split_spec(spec: str) -> tuple[str, str | None]:
  """``"name:arg"`` -> ("name", "arg"); a path like ``tests/x.py:smoke`` works too."""
  name, _, arg = spec.partition(":")
  return name, (arg or None)


def load_config(spec: str, overrides: Iterable[str] | dict[str, Any] = ()) -> ml_collections.ConfigDict:
  """Loads ``NAME[:ARG]``, applies overrides (``"key=value"`` strings or a dict) and returns a locked ConfigDict.

  ``config.name`` / ``config.arg`` record where the config came from (used for default workdirs and evaluate).
  """
  from echojax import schema

  name, arg = split_spec(spec)
  module = _load_module(name)
  cfg = module.get_config(arg)
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise UserError(f"get_config in {name} must return an ml_collections.ConfigDict")
  cfg = schema.complete(cfg, where=f"the config of {spec}")
  items = overrides.items() if isinstance(overrides, dict) else [o.partition("=")[::2] for o in overrides]
  for key, text in items:
    key = key.removeprefix("--").removeprefix("config.")
    apply_override(cfg, key, text if isinstance(text, str) else json.dumps(text))
  with cfg.unlocked():
    cfg.config_name = Path(name).stem if name.endswith(".py") else name
    cfg.config_spec = spec
    if not cfg.eval.batch_size:
      cfg.eval.batch_size = cfg.data.batch_size
  cfg.lock()
  return cfg


def default_workdir(spec: str) -> Path:
  """Deterministic workdir ``workdirs/<name>[_<arg>]`` so rerunning the same command resumes the same run."""
  name, arg = split_spec(spec)
  tag = Path(name).stem
  if arg:
    tag += "_" + "".join(c if c.isalnum() or c in "-." else "_" for c in arg)
  return Path("workdirs") / tag


def to_json(cfg: ml_collections.ConfigDict) -> str:
  """The config as JSON (tuples become lists), saved with every checkpoint and by the trainer."""
  return cfg.to_json_best_effort(indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Inverse of ``to_json`` (lists stay lists); used by evaluate to rebuild the run's config."""
  return ml_collections.ConfigDict(json.loads(text))
