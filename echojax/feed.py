"""What feeds the train step and watches it: batches pulled in order with their data positions, put onto the devices
ahead of their step (``data.device_prefetch``), the input spec for init, and the ``train.profile_steps`` profiler.

Used by :mod:`echojax.train`; nothing here knows about models or optimizers.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from echojax import sharding
from echojax.errors import UserError
from echojax.run import input_key, numeric

log = logging.getLogger("echojax.train")


class HostBatches:
  """The training loader's batches in order, each with the loader's ``get_state()`` taken right after that batch
  was pulled: the data position a checkpoint written after training on it must record (batches pulled ahead of
  the step, see :func:`device_batches`, must not move it). A finite loader starts its next pass when one ends."""

  def __init__(self, loader):
    self.loader = loader
    self._it = iter(loader)
    self._held: collections.deque = collections.deque()  # pulled by peek(), not handed out yet

  def pull(self) -> tuple[dict, bytes]:
    if self._held:
      return self._held.popleft()
    try:
      batch = next(self._it)
    except StopIteration:  # finite loaders: the next pass
      self._it = iter(self.loader)
      try:
        batch = next(self._it)
      except StopIteration:
        raise UserError(f"the training loader of {self.loader!r} yielded no batch") from None
    return batch, self.loader.get_state()

  def peek(self) -> dict:
    """The next batch, still to be handed out by pull()."""
    if not self._held:
      self._held.append(self.pull())
    return self._held[0][0]


def input_spec(config, loader, host: HostBatches) -> jax.ShapeDtypeStruct:
  """The model input of one LOCAL batch, as float32 (what init needs). From the loader's ``spec()`` (the
  pipeline's :class:`~echojax.data.pipeline.Loader` has one: nothing is read from the stream); a custom loader
  (``echojax.data.datasets.register_loader``) without ``spec()`` is probed with its first batch, which stays in
  ``host`` to be trained on first."""
  key = input_key(config)
  spec = loader.spec() if callable(getattr(loader, "spec", None)) else None
  shape = tuple(spec[key].shape) if spec is not None else tuple(np.shape(host.peek()[key]))
  return jax.ShapeDtypeStruct(shape, jnp.float32)


class DataState:
  """A data position recorded earlier (``get_state()`` bytes), saved as the checkpoint's ``data`` item."""

  def __init__(self, state: bytes):
    self.state = state

  def get_state(self) -> bytes:
    return self.state

  def set_state(self, state: bytes) -> None:
    self.state = state


def device_batches(host: HostBatches, batch_sh, depth: int, count: int) -> Iterator[tuple[dict, bytes]]:
  """``count`` (global batch on the devices, data state after it) pairs. ``depth`` (``data.device_prefetch``)
  more batches are loaded and put onto the devices (``sharding.global_batch``, the run's batch sharding, on every
  process) before the one handed out is used, so host loading and the transfer overlap the step dispatched before
  (as flax's ``jax_utils.prefetch_to_device``); 0 loads each batch just before its step. Never pulls more than
  ``count`` batches."""
  queue: collections.deque = collections.deque()
  pulled = 0
  for _ in range(count):
    while len(queue) <= depth and pulled < count:
      batch, state = host.pull()
      queue.append((sharding.global_batch(numeric(batch), batch_sh), state))
      pulled += 1
    yield queue.popleft()


class Profiler:
  """``train.profile_steps`` > 0: a ``jax.profiler`` trace of that many steps into ``<workdir>/profile/``
  (process 0), from ``train.profile_start`` steps after this run (or resume) starts, so compilation is not in
  it. ``before(step)`` runs before step ``step + 1`` is dispatched, ``after(step, state)`` after it; the trace
  stops once the state of its last step is computed."""

  def __init__(self, config, workdir: Path, start: int, num_steps: int):
    self.steps = int(config.train.profile_steps) if jax.process_index() == 0 else 0
    self.first = start + int(config.train.profile_start)
    self.last = min(self.first + self.steps, num_steps)
    self.dir = Path(workdir) / "profile"
    self.active = False
    if self.steps and self.first >= num_steps:
      log.warning("config.train.profile_start=%d: this run goes from step %d to %d, so no profile is written",
                  config.train.profile_start, start, num_steps)
      self.steps = 0

  def before(self, step: int) -> None:
    if self.steps and not self.active and step == self.first:
      self.dir.mkdir(parents=True, exist_ok=True)
      jax.profiler.start_trace(str(self.dir))
      self.active = True
      log.info("profiling steps %d-%d into %s", self.first + 1, self.last, self.dir)

  def after(self, step: int, state: Any) -> None:
    if self.active and step >= self.last:
      jax.block_until_ready(state)
      self.stop()

  def stop(self) -> None:
    if not self.active:
      return
    self.active = False
    jax.profiler.stop_trace()
    runs = sorted((self.dir / "plugins" / "profile").glob("*"), key=lambda p: p.stat().st_mtime)
    traces = sorted(runs[-1].glob("*.trace.json.gz")) if runs else []
    log.info("profile of steps %d-%d written to %s; view it with `tensorboard --logdir %s` (the Profile tab: "
             "pip install tensorboard-plugin-profile) or open %s at https://ui.perfetto.dev",
             self.first + 1, self.last, runs[-1] if runs else self.dir, self.dir,
             traces[0] if traces else "its *.trace.json.gz")
