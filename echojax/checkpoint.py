"""Checkpoints: an orbax ``CheckpointManager`` (async) per run, plus a one-slot "best" manager.

Layout under the workdir::

  checkpoints/<step>/state   params, opt_state, batch_stats, step (sharded arrays)
  checkpoints/<step>/meta    JSON: config, data iterator state, early-stopping state, ...
  best/<step>/...            the same, for the best validation metric so far (one kept)

Restoring goes through an abstract tree of ``jax.ShapeDtypeStruct`` that carries the *target* shardings, so a
checkpoint written on 8 devices restores on 1 (or on a different mesh). The trainer resumes from
``checkpoints/`` latest, else ``config.init_from`` (a workdir or checkpoint step folder: params + batch_stats
only), else starts from scratch.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from echojax.errors import UserError

log = logging.getLogger(__name__)


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of ``tree`` (arrays or ShapeDtypeStructs) carrying ``shardings`` (restore targets)."""
  return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _manager(directory: Path, keep: int | None, async_: bool, read_only: bool = False,
             name: str = "latest") -> ocp.CheckpointManager:
  """One orbax manager. ``name`` prefixes its multi-host barrier keys: orbax names a save's barriers after the
  step's temporary folder (``4.orbax-checkpoint-tmp``), the same in ``checkpoints/`` and ``best/``, so without
  distinct prefixes the two managers saving one step at once meet at each other's barriers and a multi-process
  run can hang at its final save (tests/test_multihost.py)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, enable_async_checkpointing=async_, create=not read_only, read_only=read_only,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=f"echojax_{name}"))
  return ocp.CheckpointManager(directory.absolute(), options=options, item_names=("state", "meta"))


class Checkpointer:
  """Latest-N + best-1 checkpoints of one run. ``save`` is async (call ``wait``/``close`` before exiting)."""

  def __init__(self, workdir: str | Path, *, keep: int = 2, async_: bool = True, read_only: bool = False):
    self.workdir = Path(workdir)
    if read_only and not (self.workdir / "checkpoints").is_dir():
      raise UserError(f"no checkpoints in {self.workdir}/checkpoints; train first with "
                      f"python -m echojax.train --config NAME --workdir {self.workdir}")
    self.latest = _manager(self.workdir / "checkpoints", keep, async_, read_only)
    self._best: ocp.CheckpointManager | None = None
    self._async, self._read_only = async_, read_only

  @property
  def best(self) -> ocp.CheckpointManager:
    if self._best is None:
      self._best = _manager(self.workdir / "best", 1, self._async, self._read_only, name="best")
    return self._best

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def best_step(self) -> int | None:
    if not (self.workdir / "best").is_dir():
      return None
    return self.best.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, best: bool = False) -> None:
    """Saves ``state`` (pytree of jax.Arrays) and ``meta`` (JSON-able dict) at ``step``; ``best`` also/only
    writes to the best slot."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    mngr = self.best if best else self.latest
    if step in mngr.all_steps():
      return
    mngr.save(step, args=args, force=True)

  def _pick(self, which: str) -> tuple[ocp.CheckpointManager, int]:
    mngr = self.best if which == "best" else self.latest
    step = self.best_step() if which == "best" else self.latest_step()
    if step is None:
      raise UserError(f"no {which} checkpoint in {self.workdir}; "
                      + ("no validation has run yet (use --checkpoint latest)" if which == "best"
                         else "train first with python -m echojax.train"))
    return mngr, step

  def restore_meta(self, which: str = "latest") -> tuple[int, dict]:
    mngr, step = self._pick(which)
    out = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return step, dict(out["meta"])

  def restore(self, abstract_state: Any, which: str = "latest") -> tuple[int, Any, dict]:
    """(step, state restored onto ``abstract_state``'s shapes/shardings, meta)."""
    mngr, step = self._pick(which)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                     meta=ocp.args.JsonRestore()))
    return step, out["state"], dict(out["meta"])

  def restore_weights(self, abstract_weights: Any, which: str = "latest") -> tuple[int, Any]:
    """(step, the ``{"params", "batch_stats"}`` part of the state): a partial restore that does not depend on the
    optimizer state's structure (for ``config.init_from`` with a different optimizer)."""
    mngr, step = self._pick(which)
    mngr.wait_until_finished()
    step_dir = Path(mngr.directory) / str(step)
    return step, restore_weights_from(step_dir, abstract_weights)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    if self._best is not None:
      self._best.close()


def restore_weights_from(step_dir: Path, abstract_weights: Any) -> Any:
  """Partial restore of a subtree (e.g. params + batch_stats) of ``<step_dir>/state`` onto target shardings."""
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_weights)
  return ocp.PyTreeCheckpointer().restore(
      (Path(step_dir) / "state").absolute(),
      args=ocp.args.PyTreeRestore(item=abstract_weights, restore_args=restore_args, partial_restore=True))


def restore_init_from(path: str | Path, abstract_weights: Any) -> Any:
  """Weights for ``config.init_from``: a workdir (its best, else latest checkpoint) or a ``checkpoints/<step>``
  folder. ``abstract_weights`` = ``{"params", "batch_stats"}`` with target shardings; returns them restored."""
  path = Path(path)
  if (path / "state").is_dir():  # a step folder
    return restore_weights_from(path, abstract_weights)
  if not (path / "checkpoints").is_dir():
    raise UserError(f"config.init_from={str(path)!r} is neither a workdir with checkpoints/ nor a checkpoint "
                    f"step folder; point it at a finished run's workdir")
  ck = Checkpointer(path, read_only=True)
  which = "best" if ck.best_step() is not None else "latest"
  _, weights = ck.restore_weights(abstract_weights, which)
  ck.close()
  return weights


class PreemptionFlag:
  """Set by SIGTERM (preemption / scancel): the trainer checkpoints at the next step and exits cleanly."""

  def __init__(self):
    self.requested = False
    try:
      self._old = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # not the main thread
      self._old = None

  def _handler(self, signum, frame):
    log.warning("SIGTERM received: saving a checkpoint and stopping")
    self.requested = True

  def restore(self) -> None:
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)
