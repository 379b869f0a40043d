"""Checkpoints: an orbax ``CheckpointManager`` (async) per run, plus a one-slot "best" manager.

Layout under the workdir::

  checkpoints/<step>/state   params, opt_state, batch_stats, step (sharded arrays)
  checkpoints/<step>/meta    JSON: config, early-stopping state, ...
  checkpoints/<step>/data    the data iterator's position (grain's own orbax checkpoint handler, one file per process)
  best/<step>/...            the same, for the best validation metric so far (one kept)

There is one restore path, :func:`restore_tree`: any subset of the state (``params`` + ``batch_stats`` for
evaluation, export and ``init_from``; everything for a resume) onto any shardings (an abstract tree of
``jax.ShapeDtypeStruct`` carrying the *target* shardings, so a checkpoint written on 8 devices restores on 1), or
as numpy arrays with the stored shapes (``target=None``: no devices, mesh or model needed). Which checkpoint
(``best`` / ``latest`` / ``auto``) is chosen in one place, :meth:`Checkpointer.pick`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from echojax.errors import UserError

log = logging.getLogger(__name__)

WEIGHTS = ("params", "batch_stats")  # what evaluation, export and init_from need; no optimizer state
CHOICES = ("best", "latest", "auto")


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of ``tree`` (arrays or ShapeDtypeStructs) carrying ``shardings`` (restore targets)."""
  return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def restore_tree(state_dir: str | Path, keys: Sequence[str] = WEIGHTS, target: Any = None) -> dict[str, Any]:
  """The one restore: the subtrees ``keys`` of a checkpoint's ``state`` item (``<step>/state``).

  ``target``: ``{key: abstract tree}`` of ``jax.ShapeDtypeStruct`` with shardings -> jax.Arrays placed on them;
  ``None`` -> numpy arrays with the stored shapes and structure (read from the checkpoint's metadata). A key the
  checkpoint does not hold (e.g. empty ``batch_stats``) comes back as ``{}``."""
  state_dir = Path(state_dir).absolute()
  handler = ocp.PyTreeCheckpointer()
  if target is None:
    meta = handler.metadata(state_dir)
    tree = getattr(meta, "item_metadata", None) or getattr(meta, "tree", None) or meta
    tree = getattr(tree, "tree", tree)
    if "params" in keys and "params" not in tree:
      raise UserError(f"{state_dir}: the checkpoint has no 'params' (found {sorted(tree)}); is it an echojax run?")
    item = {k: jax.tree_util.tree_map(lambda _: 0, tree[k]) for k in keys if k in tree}
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  else:
    item = {k: target[k] for k in keys}
    restore_args = ocp.checkpoint_utils.construct_restore_args(item)
  out = handler.restore(state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                               partial_restore=True))
  return {k: (out.get(k) if out.get(k) is not None else {}) for k in keys}


def _manager(directory: Path, keep: int | None, async_: bool, read_only: bool = False,
             name: str = "latest") -> ocp.CheckpointManager:
  """One orbax manager. ``name`` prefixes its multi-host barrier keys: orbax names a save's barriers after the
  step's temporary folder (``4.orbax-checkpoint-tmp``), the same in ``checkpoints/`` and ``best/``, so without
  distinct prefixes the two managers saving one step at once meet at each other's barriers and a multi-process
  run can hang at its final save (tests/test_multihost.py). Step folders are created synchronously (see below;
  tests/test_checkpoint_failures.py)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, enable_async_checkpointing=async_, create=not read_only, read_only=read_only,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=f"echojax_{name}"),
      # the step folder is created in save() itself: created in orbax's background thread, a read-only folder's
      # EROFS left the writers waiting for a "directory created" signal for orbax's whole timeout (a hang)
      async_options=ocp.options.AsyncOptions(create_directories_asynchronously=False))
  return ocp.CheckpointManager(directory.absolute(), options=options, item_names=("state", "meta", "data"))


_WRITE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)


def _os_error(e: BaseException | None) -> OSError | None:
  """The OSError behind a failed checkpoint write: ``e`` or one in its cause/context chain; a library error
  (tensorstore's ValueError, ...) whose text names a write errno counts as that errno."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno is not None:
      return e
    text = str(e)
    for code in _WRITE_ERRNOS:
      if os.strerror(code) in text:
        return OSError(code, os.strerror(code))
    e = e.__cause__ or e.__context__
  return None


class _DropWriteTracebacks(logging.Filter):
  """Orbax logs each failed background write with a full traceback (a full disk gave thousands of lines); the
  Checkpointer raises one named error instead, so those records are dropped."""

  def filter(self, record: logging.LogRecord) -> bool:
    err = _os_error(record.exc_info[1]) if record.exc_info else None
    return err is None or err.errno not in _WRITE_ERRNOS


_DROP = _DropWriteTracebacks()


def _quiet_orbax_write_errors() -> None:
  """Orbax's and asyncio's per-write error records -> dropped (see :class:`_DropWriteTracebacks`); tensorstore's
  callbacks that land on the event loop of a save orbax already abandoned ("Event loop is closed", printed through
  ``sys.unraisablehook`` once per array) -> dropped too."""
  for name in ("absl", "orbax", "asyncio"):
    logger = logging.getLogger(name)
    if _DROP not in logger.filters:
      logger.addFilter(_DROP)
  if getattr(sys.unraisablehook, "_echojax", False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
      return
    previous(unraisable)

  hook._echojax = True
  sys.unraisablehook = hook


def _join_orbax_threads(timeout: float = 30.0) -> None:
  """After a failed save orbax can leave threads of that save running (e.g. its metadata writer); they are waited
  for (at most ``timeout`` seconds in all) so they end before the interpreter shuts down, not in tracebacks after
  the error."""
  deadline = time.monotonic() + timeout
  for t in threading.enumerate():
    target = getattr(t, "_target", None)
    module = getattr(target, "__module__", None) or type(t).__module__
    if t is threading.current_thread() or t.daemon or not str(module).startswith("orbax"):
      continue
    t.join(max(0.0, deadline - time.monotonic()))


def _nbytes(tree: Any) -> int:
  return sum(int(getattr(x, "nbytes", 0) or 0) for x in jax.tree_util.tree_leaves(tree))


def _size(n: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n} B"


class _IteratorItem:
  """What grain's orbax handler needs of an iterator (``get_state() -> bytes``, ``set_state``, ``start_prefetch``),
  over an echojax loader (or any object with get_state/set_state), so the loader itself stays as it is."""

  def __init__(self, loader: Any):
    self.loader = loader

  def get_state(self) -> bytes:
    return self.loader.get_state()

  def set_state(self, state: bytes) -> None:
    self.loader.set_state(state)

  def start_prefetch(self) -> None:
    pass  # the loader starts reading at its first next()


@dataclasses.dataclass
class Restored:
  step: int
  which: str  # "best" | "latest"
  tree: dict[str, Any]  # the restored subset of the state
  meta: dict[str, Any]


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
    self._pending: dict[str, tuple[int, int]] = {}  # "latest"/"best" -> (step, bytes) of the save in flight
    self.failure: UserError | None = None  # the first failed write; later waits and the close do not raise again
    if not read_only:
      _quiet_orbax_write_errors()

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

  def save(self, step: int, state: Any, meta: dict, *, data: Any = None, best: bool = False) -> None:
    """Saves ``state`` (pytree of jax.Arrays), ``meta`` (JSON-able dict) and, when given, the data iterator
    ``data`` (anything with grain's ``get_state() -> bytes``) at ``step``; ``best`` writes to the best slot."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data is not None:
      import grain.checkpoint
      items["data"] = grain.checkpoint.CheckpointSave(_IteratorItem(data))
    which = "best" if best else "latest"
    mngr = self._mngr(which)
    if self.failure is not None:
      raise self.failure
    if step in mngr.all_steps():
      return
    try:  # the previous save's background error surfaces here (orbax's save would wait for it anyway)
      mngr.wait_until_finished()
    except Exception as e:
      self._raise_write_error(e, which)
    self._pending.pop(which, None)
    try:
      mngr.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:
      self._raise_write_error(e, which, (step, _nbytes(state)))
    self._pending[which] = (step, _nbytes(state))

  def _last_good(self) -> int | None:
    """The newest finished step folder in checkpoints/ on disk (an unfinished save is ``<step>.orbax-...``)."""
    d = self.workdir / "checkpoints"
    steps = [int(p.name) for p in d.iterdir() if p.name.isdigit()] if d.is_dir() else []
    return max(steps) if steps else None

  def _raise_write_error(self, e: Exception, which: str, attempt: tuple[int, int] | None = None) -> None:
    """A checkpoint that cannot be written (read-only folder, full disk, ...) -> one UserError naming the
    folder, the OS error, what was being written and the last good checkpoint; any other error as it is."""
    err = _os_error(e)
    if err is None:
      raise e
    step, nbytes = attempt or self._pending.get(which, (None, 0))
    folder = self.workdir / ("best" if which == "best" else "checkpoints")
    reason = err.strerror or str(err)
    name = errno.errorcode.get(err.errno, "")
    what = f"checkpoint step {step}" if step is not None else "a checkpoint"
    size = f" ({_size(nbytes)} of arrays)" if nbytes else ""
    good = self._last_good()
    self.failure = UserError(
        f"cannot write {what}{size} to {folder}: {reason}" + (f" [{name}]" if name else "") +
        (f" ({err.filename})" if err.filename else "") + ". Training stopped. " +
        (f"The last good checkpoint is step {good} in {self.workdir / 'checkpoints'}; a rerun resumes from it. "
         if good is not None else "No checkpoint was saved, so a rerun starts from scratch. ") +
        ("Free space on that disk" if err.errno in (errno.ENOSPC, errno.EDQUOT) else
         "Make the folder writable") + " or give another --workdir")
    raise self.failure from None

  def pick(self, which: str = "latest") -> tuple[str, int]:
    """("best"|"latest", step) for ``which``: "latest"; "best" (falls back to latest, with a warning, when no
    validation ran); "auto" (best if the run has one, else latest)."""
    if which not in CHOICES:
      raise UserError(f"checkpoint {which!r}: use one of {', '.join(CHOICES)}")
    if which in ("best", "auto") and self.best_step() is None:
      if which == "best" and self.latest_step() is not None:
        log.warning("no best checkpoint in %s (no validation ran); using latest", self.workdir)
      which = "latest"
    elif which == "auto":
      which = "best"
    step = self.best_step() if which == "best" else self.latest_step()
    if step is None:
      raise UserError(f"no {which} checkpoint in {self.workdir} (checkpoints/ or best/); train first with "
                      f"python -m echojax.train --config NAME --workdir {self.workdir}")
    return which, int(step)

  def _mngr(self, which: str) -> ocp.CheckpointManager:
    return self.best if which == "best" else self.latest

  def step_dir(self, which: str, step: int) -> Path:
    return Path(self._mngr(which).directory) / str(step)

  def restore_meta(self, which: str = "latest") -> tuple[int, dict]:
    which, step = self.pick(which)
    out = self._mngr(which).restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return step, dict(out["meta"])

  def restore(self, which: str = "latest", keys: Sequence[str] = WEIGHTS, target: Any = None,
              data: Any = None) -> Restored:
    """The ``keys`` subset of the ``which`` checkpoint's state through :func:`restore_tree` (``target`` as
    there), its meta, and, when ``data`` (a loader) is given, the data iterator's position restored into it."""
    which, step = self.pick(which)
    self._mngr(which).wait_until_finished()
    tree = restore_tree(self.step_dir(which, step) / "state", keys, target)
    _, meta = self.restore_meta(which)
    if data is not None:
      self.restore_data(data, which)
    return Restored(step, which, tree, meta)

  def restore_data(self, loader: Any, which: str = "latest") -> None:
    """Puts ``loader`` where the data iterator was when the ``which`` checkpoint was saved."""
    which, step = self.pick(which)
    if not (self.step_dir(which, step) / "data").is_dir():
      _, meta = self.restore_meta(which)
      if "data_state" not in meta:
        raise UserError(f"{self.step_dir(which, step)} holds no data-iterator state; it was not written by "
                        "echojax.train")
      state = meta["data_state"]  # checkpoints written before the iterator became its own item
      loader.set_state(state["__bytes__"].encode("latin-1") if isinstance(state, dict) else state)
      return
    import grain.checkpoint
    try:
      self._mngr(which).restore(step, args=ocp.args.Composite(
          data=grain.checkpoint.CheckpointRestore(_IteratorItem(loader))))
    except ValueError as e:
      raise UserError(f"the data iterator state in {self.step_dir(which, step) / 'data'} does not match this "
                      f"loader ({e}); the checkpoint was written with a different data config, split, seed, "
                      "worker_count or process count") from None

  def _open_managers(self):
    """(which, manager) for the managers that exist (``best`` is created on its first save)."""
    for which, mngr in (("latest", self.latest), ("best", self._best)):
      if mngr is not None:
        yield which, mngr

  def wait(self) -> None:
    """Waits for the saves in flight; a failed write raises its UserError (once: after a failure, later waits
    return)."""
    for which, mngr in self._open_managers():
      try:
        mngr.wait_until_finished()
      except Exception as e:
        if self.failure is None:
          self._raise_write_error(e, which)
      self._pending.pop(which, None)

  def close(self) -> None:
    """Closes both managers (their threads); a write error that surfaces only here raises its UserError, unless
    one was raised already."""
    first = None
    for which, mngr in self._open_managers():
      try:
        mngr.close()
      except Exception as e:
        if self.failure is None and first is None:
          first = (e, which)
    if first is not None or self.failure is not None:
      _join_orbax_threads()
    if first is not None:
      self._raise_write_error(*first)


def restore_init_from(path: str | Path, target: Any, keys: Sequence[str] = WEIGHTS) -> dict[str, Any]:
  """Weights for ``config.init_from``: a workdir (its best, else latest checkpoint) or a ``checkpoints/<step>``
  folder, restored onto ``target`` (``{"params", "batch_stats"}`` abstract trees with shardings)."""
  path = Path(path)
  if (path / "state").is_dir():  # a step folder
    return restore_tree(path / "state", keys, target)
  if not (path / "checkpoints").is_dir():
    raise UserError(f"config.init_from={str(path)!r} is neither a workdir with checkpoints/ nor a checkpoint "
                    f"step folder; point it at a finished run's workdir")
  ck = Checkpointer(path, read_only=True)
  try:
    return ck.restore("auto", keys, target).tree
  finally:
    ck.close()


def merge_init(fresh: dict[str, Any], loaded: dict[str, Any], reinit: str, source: str | Path) -> tuple[dict, dict]:
  """Transfer: ``fresh`` weights (``{"params", "batch_stats"}``, numpy) with every tensor taken from ``loaded`` (a
  checkpoint's, numpy) except those whose '/'-joined path matches the regex ``reinit`` (``config.init.reinit``: a
  new head, new layers), which keep their fresh initialisation. A tensor outside ``reinit`` that the checkpoint
  lacks, or holds with another shape, is a UserError naming it. Returns (merged, counts of loaded / reinit /
  unused checkpoint tensors)."""
  import re

  from flax import traverse_util

  pattern = re.compile(reinit)
  out, counts = {}, {"loaded": 0, "reinit": 0, "unused": 0}
  for key in WEIGHTS:
    flat_fresh = traverse_util.flatten_dict(fresh.get(key) or {}, sep="/")
    flat_src = traverse_util.flatten_dict(loaded.get(key) or {}, sep="/")
    merged = {}
    for path, value in flat_fresh.items():
      if pattern.search(path):
        merged[path] = value
        counts["reinit"] += 1
        continue
      if path not in flat_src:
        raise UserError(f"config.init_from={str(source)!r} has no {key} tensor {path!r} (the model has it): add it to "
                        f"config.init.reinit (now {reinit!r}) to train it from its fresh initialisation")
      src = np.asarray(flat_src[path])
      if src.shape != np.shape(value):
        raise UserError(f"config.init_from={str(source)!r}: {key} tensor {path!r} is {src.shape} there and "
                        f"{np.shape(value)} in this model; same architecture arguments (config.model.kwargs)? or "
                        f"add it to config.init.reinit (now {reinit!r}) to re-initialise it")
      merged[path] = src.astype(np.asarray(value).dtype)
      counts["loaded"] += 1
    counts["unused"] += len(set(flat_src) - set(flat_fresh))
    out[key] = traverse_util.unflatten_dict(merged, sep="/") if merged else {}
  return out, counts


class PreemptionFlag:
  """SIGTERM (preemption / scancel): the trainer checkpoints and exits cleanly. ``check(step)`` is called at every
  step and says whether to stop there.

  One process: a Python SIGTERM handler; the run stops at the next step. Several processes: JAX's preemption sync
  manager (the coordination service tells every host of a notice any host got, and they agree on one step,
  ``multihost_utils.reached_preemption_sync_point``), so all hosts save the same step together; a per-process flag
  let one host enter the save's barrier while the others trained on, and the run hung."""

  def __init__(self):
    self.requested = False
    self._old = None
    self._multi = jax.process_count() > 1
    if self._multi:
      from jax._src import distributed

      if getattr(distributed.global_state, "preemption_sync_manager", None) is None:
        log.warning("JAX's preemption service is off (jax_enable_preemption_service): a SIGTERM ends this "
                    "multi-process run without a checkpoint")
        self._multi = None
      return
    try:
      self._old = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # not the main thread
      self._old = None

  def _handler(self, signum, frame):
    log.warning("SIGTERM received: saving a checkpoint and stopping")
    self.requested = True

  def check(self, step: int) -> bool:
    """Whether to save and stop at ``step`` (every host gets the same answer at the same step)."""
    if self._multi and not self.requested:
      from jax.experimental import multihost_utils

      if multihost_utils.reached_preemption_sync_point(int(step)):
        log.warning("preemption notice: every process saves a checkpoint at step %d and stops", step)
        self.requested = True
    return self.requested

  def restore(self) -> None:
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)
