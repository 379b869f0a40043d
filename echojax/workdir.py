"""What the trainer writes in a run folder, and what a (re)run may touch there.

- :class:`MetricsWriter`: ``metrics.jsonl`` and TensorBoard events, written by process 0 only (also when a resume
  cuts the log back to the resumed step).
- :func:`check_workdir`: before anything is written, a folder whose ``checkpoints/`` are gone but whose ``best/`` or
  ``metrics.jsonl`` remain stops the run (an earlier run is never silently replaced).
- :func:`check_resume_config` / :func:`config_changes`: a resume whose config differs from the latest checkpoint's
  stops, listing the keys, unless the user allows it; :func:`write_config` writes ``config.json`` and keeps any
  config it replaces in ``config_history/``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import jax

from echojax import config as config_lib
from echojax.errors import UserError

log = logging.getLogger("echojax.train")


class MetricsWriter:
  """metrics.jsonl + TensorBoard. On resume, lines after the restored step are dropped so the file matches an
  uninterrupted run."""

  def __init__(self, workdir: Path, resume_step: int | None):
    self.path = workdir / "metrics.jsonl"
    if self.path.exists() and jax.process_index() == 0:  # one writer, also on resume
      keep = [ln for ln in self.path.read_text().splitlines()
              if ln.strip() and resume_step is not None and json.loads(ln).get("step", 0) <= resume_step]
      self.path.write_text("".join(k + "\n" for k in keep))
    self.tb = None
    if jax.process_index() == 0:
      try:
        from tensorboardX import SummaryWriter
        self.tb = SummaryWriter(str(workdir / "tb"))
      except ImportError:
        log.warning("tensorboardX not installed; no TensorBoard events")

  def write(self, record: dict) -> None:
    if jax.process_index() != 0:
      return
    with self.path.open("a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    if self.tb is not None:
      prefix = record.get("split", "train")
      for k, v in record.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step" and math.isfinite(v):
          self.tb.add_scalar(f"{prefix}/{k}", v, record["step"])
      self.tb.flush()

  def close(self):
    if self.tb is not None:
      self.tb.close()


def _scalars(metrics: dict) -> dict:
  """Numeric leaves of nested metrics as flat "a/b" keys; NaN -> None so the JSONL stays valid JSON."""
  from echojax.metrics import flatten
  return {k: (v if math.isfinite(v) else None) for k, v in flatten(metrics).items()}


# ----------------------------------------------------------------------------------------------------------------
# Run safety: what a (re)run may overwrite


def _step_dirs(directory: Path) -> list[int]:
  """Finished orbax steps in ``directory`` (its ``<step>`` folders; unfinished saves are ``<step>.orbax-...``)."""
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def check_workdir(workdir: Path) -> None:
  """Before anything is written: the workdir is a folder, and a run without a latest checkpoint does not replace
  what an earlier run left (``metrics.jsonl`` with records, ``best/``): a scratch start would truncate the one and
  delete the other. A run that died before its first checkpoint left ``checkpoints/`` (empty) and no ``best/``;
  that restarts from scratch as before."""
  if workdir.exists() and not workdir.is_dir():
    raise UserError(f"--workdir {workdir} is a file, not a folder; give a folder (new or a run's workdir)")
  if not workdir.is_dir() or _step_dirs(workdir / "checkpoints"):
    return
  found = []
  best = _step_dirs(workdir / "best")
  if best:
    found.append(f"best/ (the best checkpoint, step {best[-1]})")
  metrics = workdir / "metrics.jsonl"
  if metrics.is_file() and (not (workdir / "checkpoints").is_dir() or best):
    lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
    if lines:
      try:
        last_step = max(json.loads(ln).get("step", 0) for ln in lines)
      except ValueError:
        last_step = "?"
      found.append(f"metrics.jsonl ({len(lines)} records, up to step {last_step})")
  if not found:
    return
  old = " ".join(str(workdir / n) for n in ("metrics.jsonl", "best", "config.json", "tb") if (workdir / n).exists())
  raise UserError(
      f"{workdir} holds an earlier run ({' and '.join(found)}) but no checkpoints/ to resume from, so training "
      f"would start from scratch and replace it. Nothing was changed. Move the old files away (e.g. mkdir "
      f"{workdir / 'old'} && mv {old} {workdir / 'old'}/), or train in another --workdir")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Dotted leaves of a JSON config (an empty dict is a leaf, so adding or removing a block shows)."""
  if isinstance(tree, dict) and tree:
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


#: fields that do not change what a resumed run computes: config_changes leaves them out (and ``init.*``)
UNCOMPARED = ("init_from", "train.profile_steps", "train.profile_start", "data.device_prefetch")


def config_changes(old: dict, new: dict) -> list[str]:
  """``key: old -> new`` for every dotted key whose value differs (``(absent)`` where one side lacks it). ``old``
  is completed with the schema's defaults first, so a run stored by an older version differs only where a value
  really changed."""
  from echojax import schema
  a = _flat(json.loads(config_lib.to_json(schema.fill_defaults(old))))
  b = _flat(json.loads(json.dumps(new)))
  for d in (a, b):  # how a run STARTS (ImageNet file, init_from), profiling, prefetch: no effect on a resume
    for k in [k for k in d if k in UNCOMPARED or k.startswith("init.")]:
      del d[k]
  absent = object()
  show = lambda v: "(absent)" if v is absent else json.dumps(v)
  return [f"{k}: {show(a.get(k, absent))} -> {show(b.get(k, absent))}" for k in sorted(set(a) | set(b))
          if a.get(k, absent) != b.get(k, absent)]


def check_resume_config(config, stored: dict, step: int, workdir: Path, allow_change: bool) -> list[str]:
  """On resume: the config the latest checkpoint was trained with (its meta) against this run's. A difference
  stops the run (UserError listing the keys) unless ``allow_change``; returns the differences."""
  changes = config_changes(stored, json.loads(config_lib.to_json(config)))
  if changes and not allow_change:
    shown = changes[:20] + ([f"... and {len(changes) - 20} more"] if len(changes) > 20 else [])
    raise UserError(
        f"{workdir} holds a run at step {step} trained with another config; resuming it with this one would "
        f"change ({len(changes)} key(s), old -> new):\n  " + "\n  ".join(shown) + "\nNothing was changed. Rerun "
        f"with the run's own settings, train in another --workdir, or pass --allow-config-change (train(..., "
        f"allow_config_change=True)) to continue these weights with the new config (the old one is kept in "
        f"{workdir / 'config_history'}/)")
  if changes:
    log.warning("resuming step %d with a changed config (--allow-config-change): %s", step, "; ".join(changes))
  return changes


def write_config(config, workdir: Path, step: int, stored: dict | None) -> None:
  """Writes ``config.json``. When it replaces a different one (or the resumed checkpoint's config differs), the
  old configs are kept first as ``config_history/<step>-<UTC time>[-<what>].json``, so every config a run's weights
  were trained with stays on disk."""
  path = workdir / "config.json"
  text = config_lib.to_json(config)
  olds = []
  if stored is not None and config_changes(stored, json.loads(text)):
    olds.append(("checkpoint", json.dumps(stored, indent=2, sort_keys=True)))
  if path.is_file() and path.read_text() != text:
    previous = path.read_text()
    try:
      same_as_stored = json.loads(previous) == stored
    except ValueError:  # a damaged config.json is kept as it was, too
      same_as_stored = False
    if not olds or not same_as_stored:
      olds.append(("config", previous))
  if olds:
    history = workdir / "config_history"
    history.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for what, old in olds:
      name = f"{step:08d}-{stamp}" + (f"-{what}" if len(olds) > 1 else "") + ".json"
      (history / name).write_text(old)
      log.info("kept the previous config as %s", history / name)
  path.write_text(text)
