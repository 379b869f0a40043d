"""grain input pipelines over prepared (TFDS array_record) data: clip sampling, normalisation, augmentation,
fixed-shape batching and per-process sharding.

    loader = make_loader(config.data, "train", train=True, seed=0)
    for batch in loader: ...                  # dicts of numpy arrays with fixed shapes
    state = loader.get_state()                # bytes (JSON); orbax saves it with the train state
    loader.set_state(state)                   # a restored loader continues exactly where the saved one was
    loader.spec()                             # {key: jax.ShapeDtypeStruct} of one local batch (stream untouched)

The data config fields and their defaults are documented in :mod:`echojax.data.options` (``DEFAULTS``). The
pieces: :mod:`~echojax.data.options` (options, stats), :mod:`~echojax.data.sources` (prepared split -> records,
row table), :mod:`~echojax.data.frames` (frame reads, clip tables), :mod:`~echojax.data.transforms` (row ->
sample, batching), :mod:`~echojax.data.samplers` (frame samplers by name); this module builds the loader from them
and re-exports the names other code imports from here.

Train batches are drawn from an infinite, per-epoch-reshuffled stream with ``drop_remainder``. Eval loaders make
one pass; the last batch is padded with ``valid=False`` rows (``index=-1``) so every batch has the same shape and
every process yields the same number of batches.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterator

import grain.python as grain
import numpy as np

from echojax.data.frames import (LazyFrames, PreadFrameStore, _all_clip_rows, _beat_clip_rows, _resize,  # noqa: F401
                                 clip_starts)
from echojax.data.options import (DEFAULTS, PRESETS, STATS_FILE, VALUE_RANGES, _cfg_get, _to_dict,  # noqa: F401
                                  check_value_range, load_stats, resolve_options, unit_stats)
from echojax.data.samplers import FrameSampler, get_frame_sampler, register_frame_sampler  # noqa: F401
from echojax.data.sources import FastTfdsSource, RowSource, _source_desc, fast_source, open_source  # noqa: F401
from echojax.data.transforms import ClipTransform, PendingClip, batch_samples  # noqa: F401
from echojax.errors import UserError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# loader


class Loader:
  """Iterable over fixed-shape batches with grain's checkpointable iterator state.

  ``iter(loader)`` continues the current pass (train: infinite). An eval loader starts a new pass once the
  previous one is exhausted, so ``for batch in loader`` can be repeated for every evaluation.
  """

  def __init__(self, dataloader: grain.DataLoader, *, train: bool, num_examples: int, num_rows: int,
               local_batch_size: int, global_batch_size: int, process_index: int, process_count: int,
               opts: dict, source: Any = None, row_source: Any = None, transform: Any = None):
    self.dataloader = dataloader
    self.source = source  # the split's random-access source (records), for targets()
    self.row_source, self.transform = row_source, transform  # what the dataloader maps, for spec()
    self.train = train
    self.num_examples = num_examples  # records (videos/images) in the split
    self.num_rows = num_rows  # rows before padding (clips for clips="all")
    self.local_batch_size = local_batch_size
    self.global_batch_size = global_batch_size
    self.process_index = process_index
    self.process_count = process_count
    self.options = opts
    self._it = None
    self._targets: dict[str, np.ndarray] = {}

  def targets(self, keys) -> dict[str, np.ndarray]:
    """Every record's value of each feature in ``keys`` over the WHOLE split (all processes see the same), e.g.
    class frequencies or the EF mean for output-bias init. Reads each record once (progress bar); cached."""
    from tqdm import tqdm

    keys = [keys] if isinstance(keys, str) else list(keys)
    todo = [k for k in keys if k not in self._targets]
    if todo:
      vals: dict[str, list] = {k: [] for k in todo}
      n = len(self.source)
      for i in tqdm(range(n), desc="reading targets", unit="record", leave=False, disable=n < 500):
        rec = self.source[i]
        for k in todo:
          if k not in rec:
            raise UserError(f"target {k!r} is not a feature of {self.options['name']} records; features present: "
                            f"{sorted(rec)} (check config fields task.* / data.targets)")
          vals[k].append(np.asarray(rec[k]))
      self._targets.update({k: np.stack(v) for k, v in vals.items()})
    return {k: self._targets[k] for k in keys}

  def spec(self) -> dict[str, Any]:
    """``{key: jax.ShapeDtypeStruct}`` of one LOCAL batch (this process's ``local_batch_size`` rows), equal to the
    shape and dtype of every batch the loader yields, computed without touching the iterator stream: the
    loader's own :class:`ClipTransform` applied to row 0 of its row table (one random-access read of record 0),
    with the batch size put in front (as :func:`batch_samples` stacks the samples)."""
    import copy

    import jax

    transform = copy.copy(self.transform)  # its caches stay the dataloader's own
    sample = transform.random_map(self.row_source[0], np.random.default_rng(0))
    out = {}
    for key, v in sample.items():
      shape, dtype = (v.shape, v.dtype) if isinstance(v, PendingClip) else (np.shape(v), np.asarray(v).dtype)
      out[key] = jax.ShapeDtypeStruct((self.local_batch_size, *shape), np.dtype(dtype))
    return out

  @property
  def steps_per_epoch(self) -> int:
    """Global steps per pass over the split (train: whole batches only; eval: including the padded last batch)."""
    if self.train:
      return max(self.num_rows // self.global_batch_size, 1)
    return math.ceil(self.num_rows / self.global_batch_size)

  def __len__(self) -> int:
    if self.train:
      raise TypeError("a training loader is infinite; use loader.steps_per_epoch")
    return self.steps_per_epoch

  @property
  def iterator(self):
    """The underlying grain DataLoaderIterator (for orbax's grain checkpoint handler)."""
    if self._it is None:
      self._it = iter(self.dataloader)
    return self._it

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    try:
      return next(self.iterator)
    except StopIteration:
      self._it = None  # the next iteration starts a new pass
      raise

  def get_state(self) -> bytes:
    """grain iterator state (JSON bytes): where the stream is, for checkpoints."""
    return self.iterator.get_state()

  def set_state(self, state: bytes | str) -> None:
    """Continue from a state returned by get_state (of a loader built from the same config/seed/process)."""
    if isinstance(state, str):
      state = state.encode()
    try:
      self.iterator.set_state(state)
    except ValueError as e:
      raise UserError(f"data iterator state does not match this loader ({e}); the checkpoint was written with a "
                      "different data config, split, seed, worker_count or process count") from None


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} out of range for process_count {process_count}")
  return int(process_index), int(process_count)


def _absl_flags_ready() -> None:
  """grain worker processes read absl flags; outside an absl app they are unparsed, so use their defaults."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def build_loader(source: Any, stats: tuple[np.ndarray, np.ndarray], data_cfg: Any, split: str, *, train: bool,
                 seed: int, process_index: int | None = None, process_count: int | None = None,
                 frame_sampler: FrameSampler | None = None) -> Loader:
  """Loader over any random-access ``source`` (``len`` + ``__getitem__`` -> feature dict); see make_loader.

  ``stats`` = (mean, std) in [0, 255] units, used as given (make_loader picks them from ``data.value_range``)."""
  opts = resolve_options(data_cfg)
  p, n = _process(process_index, process_count)
  global_b = int(opts["batch_size"])
  if global_b % n:
    raise UserError(f"config field data.batch_size={global_b} is the global batch and must be divisible by the "
                    f"number of processes ({n}); use a multiple of {n}")
  local_b = global_b // n
  if frame_sampler is None and opts["frame_sampler"]:
    frame_sampler = get_frame_sampler(opts["frame_sampler"])
  num_examples = len(source)
  if num_examples == 0:
    raise UserError(f"split {split!r} of {opts['name']} is empty; check the prepare summary (echojax_report.json)")
  desc = f"{_source_desc(source)}, split={split}"
  if train:
    rows = np.stack([np.arange(num_examples), np.zeros(num_examples), -np.ones(num_examples),
                     np.ones(num_examples)], axis=1)
    if num_examples < n:
      raise UserError(f"split {split!r} has {num_examples} examples, fewer than the {n} processes")
    if num_examples < global_b:  # drop_remainder would give no whole batch of distinct examples
      raise UserError(f"config field data.batch_size={global_b} is larger than the {num_examples} examples of the "
                      f"{split!r} split of {opts['name']}; lower data.batch_size (to {num_examples} or less) or "
                      "prepare more data")
  else:
    if opts["clips"] in ("all", "beats") and opts["preset"] == "video_clip" and frame_sampler is None:
      stride = int(opts["clip_stride"] or int(opts["frames"]) * int(opts["period"]))
      if opts["clips"] == "beats":
        rows, beat_sources = _beat_clip_rows(source, int(opts["frames"]), int(opts["period"]), stride)
        log.info("beat-by-beat clips of %s: %d clips of %d videos; beats from %s", desc, len(rows), num_examples,
                 ", ".join(f"{k} {v}" for k, v in sorted(beat_sources.items()))
                 + (" (no cycle found: those videos use every clip)" if "none" in beat_sources else ""))
      else:
        rows = _all_clip_rows(source, int(opts["frames"]), int(opts["period"]), stride)
    else:
      rows = np.stack([np.arange(num_examples), np.zeros(num_examples), -np.ones(num_examples),
                       np.ones(num_examples)], axis=1)
  num_rows = len(rows)
  if not train:  # pad to whole global batches so every process gets the same number of full batches
    padded = math.ceil(num_rows / global_b) * global_b
    pad = np.tile(np.array([[0, 0, -1, 0]]), (padded - num_rows, 1))
    rows = np.concatenate([rows, pad]) if len(pad) else rows
  if int(opts["worker_count"]) > 0:
    _absl_flags_ready()
  row_source = RowSource(source, rows, desc)
  shard = grain.ShardOptions(shard_index=p, shard_count=n, drop_remainder=True)
  sampler = grain.IndexSampler(num_records=len(row_source), shard_options=shard, shuffle=train,
                               num_epochs=None if train else 1, seed=int(seed) % (2**32))
  transform = ClipTransform(opts, stats[0], stats[1], train, frame_sampler)
  ops = [transform, grain.Batch(batch_size=local_b, drop_remainder=train, batch_fn=batch_samples)]
  dl = grain.DataLoader(data_source=row_source, sampler=sampler, operations=ops,
                        worker_count=int(opts["worker_count"]), worker_buffer_size=int(opts["worker_buffer_size"]),
                        read_options=grain.ReadOptions(num_threads=int(opts["read_threads"]),
                                                       prefetch_buffer_size=int(opts["prefetch"])))
  return Loader(dl, train=train, num_examples=num_examples, num_rows=num_rows, local_batch_size=local_b,
                global_batch_size=global_b, process_index=p, process_count=n, opts=opts, source=source,
                row_source=row_source, transform=transform)


def _unit_range(data_cfg: Any) -> bool:
  """True for ``data.value_range='unit'`` (x / 255), False for the prepared mean/std; UserError for other values."""
  return check_value_range(_cfg_get(data_cfg, "value_range")) == "unit"


def _prepared_stats(data_cfg: Any, version_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
  """The training data's (mean, std): as the trainer recorded them in ``data.norm_stats`` (so another prepared
  copy, e.g. an external site, is normalised as the model was trained), else from ``version_dir``."""
  recorded = _cfg_get(data_cfg, "norm_stats")
  if recorded:
    return np.asarray(recorded["mean"], np.float32), np.asarray(recorded["std"], np.float32)
  feature = "image" if _cfg_get(data_cfg, "preset") == "image" else "video"
  return load_stats(version_dir / STATS_FILE, feature)


def record_stats(data_cfg: Any) -> dict[str, Any]:
  """``data.norm_stats`` of a prepared dataset: its train split's mean/std and the side its frames are stored at
  (what predict needs to read a user's file as a prepared record), for the trainer to write into config.json."""
  source, version_dir = open_source(data_cfg, _cfg_get(data_cfg, "train_split"))
  mean, std = _prepared_stats({**_to_dict(data_cfg), "norm_stats": None}, version_dir)
  first = source[0]
  pixels = first["image"] if _cfg_get(data_cfg, "preset") == "image" and "image" in first else first["video"]
  side = int(np.asarray(pixels).shape[-2])
  return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "stored_size": side}


def make_loader(data_cfg: Any, split: str, *, train: bool, seed: int, process_index: int | None = None,
                process_count: int | None = None, frame_sampler: FrameSampler | None = None) -> Loader:
  """Loader over the prepared ``split`` of ``data_cfg.name`` (fields: :mod:`echojax.data.options`).

  Batches are normalised with the prepared data's mean/std, or scaled to [0, 1] for ``data.value_range='unit'``.
  ``process_index``/``process_count`` default to JAX's; process p of n reads a disjoint shard of the split and
  the shards together cover it. ``frame_sampler`` overrides ``data_cfg.frame_sampler`` with a callable.
  """
  unit = _unit_range(data_cfg)
  source, version_dir = open_source(data_cfg, split)
  stats = unit_stats() if unit else _prepared_stats(data_cfg, version_dir)
  return build_loader(source, stats, data_cfg, split, train=train, seed=seed, process_index=process_index,
                      process_count=process_count, frame_sampler=frame_sampler)


def input_normalization(data_cfg: Any) -> tuple[np.ndarray, np.ndarray] | None:
  """(mean, std) in [0, 255] units when ``data.normalize='device'`` (uint8 batches, normalised inside the jitted
  step: 4x less host memory traffic per clip), else None (batches are already normalised float32). They are the
  stats make_loader would normalise with on the host: x / 255 for ``data.value_range='unit'``, else the prepared
  train split's mean/std."""
  if _cfg_get(data_cfg, "normalize") != "device":
    return None
  if _unit_range(data_cfg):
    return unit_stats()
  if _cfg_get(data_cfg, "norm_stats"):
    return _prepared_stats(data_cfg, None)
  return _prepared_stats(data_cfg, open_source(data_cfg, "train")[1])

