"""grain input pipelines over prepared (TFDS array_record) data: clip sampling, normalisation, augmentation,
fixed-shape batching and per-process sharding.

    loader = make_loader(config.data, "train", train=True, seed=0)
    for batch in loader: ...                  # dicts of numpy arrays with fixed shapes
    state = loader.get_state()                # bytes (JSON); orbax saves it with the train state
    loader.set_state(state)                   # a restored loader continues exactly where the saved one was

Data config fields (ml_collections.ConfigDict or dict; defaults in ``DEFAULTS``):

- ``name`` (dataset / TFDS builder name), ``data_dir`` (prepared data; empty -> the synthetic phantom set is
  generated and prepared into the cache), ``builder_config`` (e.g. "112").
- ``preset``: "video_clip" (batch key ``video`` (B,T,H,W,C)) or "image" (batch key ``image`` (B,H,W,C)).
- ``frames``, ``period``: a clip is ``frames`` frames taken every ``period`` stored frames.
- ``clips`` (eval only): "one" (one clip per video at ``eval_start`` = "zero" or "center") or "all" (every clip
  start ``clip_stride`` apart, default ``frames * period``, plus one clip ending at the last frame; each clip is its
  own row with ``index`` + ``clip_id`` so evaluation can average per video; ``clip_stride=1`` is
  EchoNet-Dynamic's test-time augmentation).
- ``pad_mode``: videos shorter than a clip are padded with black frames ("zeros") or the last frame ("repeat");
  ``mask`` (B,T) is False on padded frames either way.
- ``batch_size``: the GLOBAL batch; each process loads ``batch_size // process_count`` rows.
- ``normalize``: "host" (float32 normalised batches, the default) or "device" (uint8 batches; the trainer
  normalises inside the jitted step with the same stats: see ``input_normalization``).
- ``augment``: dict of options of :mod:`echojax.data.augment` (train only).
- ``targets``: record features copied into the batch (default: whichever of ``ef``/``label`` the records have).
- ``size``: resize frames to ``size`` x ``size`` after slicing (default: keep the stored size).
- ``frame_sampler``: name registered with :func:`register_frame_sampler` (or pass a callable to
  :func:`make_loader`): ``fn(record, rng) -> frame indices`` replaces the start/period rule, e.g. ECG-gated
  phase sampling. Indices outside ``[0, num_frames)`` become padded frames.
- ``image_frame`` (image preset over video records): "middle", "random" (train) , "ed" or "es".
- ``worker_count`` (grain worker processes; 0 = in-process), ``read_threads``, ``prefetch``.

Only the clip is ever converted to float: the stored uint8 record is read, the clip frames are sliced from it,
then (optionally) warped, converted to float32 and normalised with the per-channel mean/std that
``python -m echojax.data.prepare`` stores as ``echojax_stats.json`` beside the prepared data.

Train batches are drawn from an infinite, per-epoch-reshuffled stream with ``drop_remainder``. Eval loaders make
one pass; the last batch is padded with ``valid=False`` rows (``index=-1``) so every batch has the same shape and
every process yields the same number of batches.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import cv2
import grain.python as grain
import numpy as np

from echojax.data import augment as aug
from echojax.errors import UserError

STATS_FILE = "echojax_stats.json"
PRESETS = ("video_clip", "image")

DEFAULTS: dict[str, Any] = {
    "name": "echonet_dynamic",
    "data_dir": "",
    "builder_config": None,
    "config": None,  # alias of builder_config
    "preset": "video_clip",
    "frames": 32,
    "period": 2,
    "batch_size": 8,
    "clips": "one",
    "clip_stride": None,
    "eval_start": "zero",
    "pad_mode": "zeros",
    "normalize": "host",
    "augment": {},
    "targets": None,
    "size": None,
    "frame_sampler": None,
    "image_frame": "middle",
    "worker_count": 0,
    "worker_buffer_size": 2,
    "read_threads": 2,
    "prefetch": 8,
}

FrameSampler = Callable[[Mapping[str, Any], np.random.Generator], np.ndarray]
_FRAME_SAMPLERS: dict[str, FrameSampler] = {}


def register_frame_sampler(name: str, fn: FrameSampler | None = None):
  """Register ``fn(record, rng) -> int frame indices`` under ``name`` (usable as a decorator).

  Data configs pick it with ``frame_sampler=name``. The function must be importable (module level) so grain
  worker processes can pickle it. It gets the decoded record (``video`` uint8 (T,H,W,C), ``num_frames``, and any
  other stored features, e.g. ECG R-peaks) and, in training, a per-sample ``np.random.Generator`` (deterministic for
  the loader seed and the sample's position); evaluation loaders pass ``None``, and the sampler must then choose
  deterministically, so every evaluation sees the same frames. For the video preset it must return ``frames``
  indices; for the image preset 1.
  """

  def deco(f):
    _FRAME_SAMPLERS[name] = f
    return f

  return deco(fn) if fn is not None else deco


def get_frame_sampler(name: str) -> FrameSampler:
  if name not in _FRAME_SAMPLERS:
    raise UserError(f"unknown frame sampler {name!r} (config field data.frame_sampler); registered: "
                    f"{', '.join(sorted(_FRAME_SAMPLERS)) or 'none'}. Register one with "
                    "echojax.data.pipeline.register_frame_sampler(name, fn) in an imported module.")
  return _FRAME_SAMPLERS[name]


# ----------------------------------------------------------------------------------------------------------------
# config and data source


def _cfg_get(cfg: Any, key: str) -> Any:
  if cfg is None:
    return DEFAULTS[key]
  if isinstance(cfg, Mapping):
    val = cfg.get(key, DEFAULTS[key])
  else:  # ml_collections.ConfigDict / FrozenConfigDict / any attribute bag
    val = cfg.get(key, DEFAULTS[key]) if hasattr(cfg, "get") else getattr(cfg, key, DEFAULTS[key])
  return DEFAULTS[key] if val is None and DEFAULTS[key] is not None else val


def _to_dict(x: Any) -> dict:
  if x is None:
    return {}
  if hasattr(x, "to_dict"):
    return x.to_dict()
  return dict(x)


def resolve_options(data_cfg: Any) -> dict[str, Any]:
  """Data config -> plain dict of every pipeline option (defaults filled in), validated."""
  opts = {k: _cfg_get(data_cfg, k) for k in DEFAULTS}
  opts["augment"] = aug.check_options(_to_dict(opts["augment"]))
  if opts["preset"] not in PRESETS:
    raise UserError(f"config field data.preset is {opts['preset']!r}; use one of {', '.join(PRESETS)}")
  for k in ("frames", "period", "batch_size"):
    if int(opts[k]) < 1:
      raise UserError(f"config field data.{k} must be >= 1, got {opts[k]}")
  if opts["clips"] not in ("one", "all"):
    raise UserError(f"config field data.clips is {opts['clips']!r}; use 'one' or 'all'")
  if opts["eval_start"] not in ("zero", "center"):
    raise UserError(f"config field data.eval_start is {opts['eval_start']!r}; use 'zero' or 'center'")
  if opts["pad_mode"] not in ("zeros", "repeat"):
    raise UserError(f"config field data.pad_mode is {opts['pad_mode']!r}; use 'zeros' or 'repeat'")
  if opts["normalize"] not in ("host", "device"):
    raise UserError(f"config field data.normalize is {opts['normalize']!r}; use 'host' or 'device'")
  if opts["normalize"] == "device" and (opts["augment"].get("brightness") or opts["augment"].get("contrast")):
    raise UserError("config field data.normalize='device' ships uint8 clips, which cannot carry brightness/contrast "
                    "jitter: set data.normalize='host' or drop data.augment.brightness/contrast")
  if opts["image_frame"] not in ("middle", "random", "ed", "es"):
    raise UserError(f"config field data.image_frame is {opts['image_frame']!r}; use middle, random, ed or es")
  if opts["targets"] is not None:
    opts["targets"] = [opts["targets"]] if isinstance(opts["targets"], str) else list(opts["targets"])
  return opts


def load_stats(path: str | Path, feature: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Read per-channel (mean, std) in [0, 255] units from an echojax_stats.json.

  Accepted layouts: ``{"mean": [...], "std": [...]}`` at the top level, or under a feature key
  (``{"video": {"mean":..., "std":...}}``) or under ``"train"``.
  """
  path = Path(path)
  try:
    stats = json.loads(path.read_text())
  except FileNotFoundError:
    raise UserError(f"{path} not found: the prepared data has no normalisation statistics. Prepare the data with "
                    f"`python -m echojax.data.prepare <name> --manual-dir RAW --data-dir DATA_DIR`, which writes it "
                    "(or copy the echojax_stats.json of the original preparation next to the array_record files).")
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON ({e}); re-run `python -m echojax.data.prepare` to rewrite it")
  candidates = [stats]
  for key in (feature, "video", "image", "train", "stats"):
    if key and isinstance(stats.get(key), Mapping):
      candidates.append(stats[key])
  for c in candidates:
    if "mean" in c and "std" in c:
      mean = np.asarray(c["mean"], np.float32).reshape(-1)
      std = np.asarray(c["std"], np.float32).reshape(-1)
      if mean.shape != std.shape or np.any(std <= 0):
        raise UserError(f"{path}: fields mean/std must be same-length lists with std > 0, got {c['mean']} / "
                        f"{c['std']}; re-run `python -m echojax.data.prepare`")
      return mean, std
  raise UserError(f"{path} has no 'mean'/'std' fields; re-run `python -m echojax.data.prepare` to rewrite it")


def open_source(data_cfg: Any, split: str) -> tuple[Any, Path]:
  """Open the prepared split as a random-access source (no TensorFlow) -> (source, prepared version folder).

  Prefers the split's memmap frame store (:mod:`echojax.data.framestore`, written by ``prepare``), whose ``video``
  is a view of the frames on disk; otherwise the TFDS array_record source, read through :func:`fast_source`.
  """
  import tensorflow_datasets as tfds  # heavy import; only when reading prepared data

  from echojax.data.datasets import DATASETS

  name = _cfg_get(data_cfg, "name")
  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r} (config field data.name); known: {', '.join(sorted(DATASETS))}")
  info = DATASETS[name]
  builder_config = (_cfg_get(data_cfg, "builder_config") or _cfg_get(data_cfg, "config")
                    or info.default_config)
  data_dir = _cfg_get(data_cfg, "data_dir")
  if not data_dir:
    from echojax.data import datasets as ds_mod

    if not hasattr(ds_mod, "ensure_synthetic"):
      raise UserError(f"config field data.data_dir is empty and no synthetic {name} set can be made here; set "
                      "data.data_dir to the folder given to `python -m echojax.data.prepare --data-dir`")
    data_dir = ds_mod.ensure_synthetic(name, builder_config)
  importlib.import_module(info.builder_module)
  try:
    builder = tfds.builder(name, config=builder_config, data_dir=str(data_dir))
  except Exception as e:  # tfds raises many types for a wrong name/config/folder
    raise UserError(f"could not open prepared dataset {name} (config {builder_config}) in {data_dir}: {e}. Prepare "
                    f"it with `python -m echojax.data.prepare {name} --manual-dir RAW --data-dir {data_dir}`")
  version_dir = Path(builder.data_dir)
  if not (version_dir / "dataset_info.json").exists():
    raise UserError(f"dataset {name} (config {builder_config}) is not prepared in {data_dir} (config field "
                    f"data.data_dir): run `python -m echojax.data.prepare {name} --manual-dir RAW --data-dir "
                    f"{data_dir}` first")
  splits = list(builder.info.splits.keys())
  if split not in splits:
    raise UserError(f"split {split!r} not in prepared {name} at {version_dir}; available splits: {', '.join(splits)}")
  try:  # the memmap frame store `prepare` writes beside the shards: clip reads touch only the clip's frames
    from echojax.data.framestore import open_frame_store
  except ImportError:
    open_frame_store = None
  store = open_frame_store(version_dir, name, split) if open_frame_store is not None else None
  if store is not None and len(store) == builder.info.splits[split].num_examples:
    return (PreadFrameStore(store) if PreadFrameStore.supports(store) else store), version_dir
  return fast_source(builder.as_data_source(split=split)), version_dir


# ----------------------------------------------------------------------------------------------------------------
# zero-copy record reading for TFDS array_record sources


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
  result = shift = 0
  while True:
    b = buf[pos]
    pos += 1
    result |= (b & 0x7F) << shift
    if not b & 0x80:
      return result, pos
    shift += 7


def _fields(buf: memoryview, start: int, end: int):
  """Walk protobuf wire-format fields in buf[start:end] -> (field number, wire type, value start, value end)."""
  pos = start
  while pos < end:
    key, pos = _varint(buf, pos)
    field, wire = key >> 3, key & 7
    if wire == 2:
      n, pos = _varint(buf, pos)
      yield field, wire, pos, pos + n
      pos += n
    elif wire == 0:
      v0 = pos
      _, pos = _varint(buf, pos)
      yield field, wire, v0, pos
    elif wire == 5:
      yield field, wire, pos, pos + 4
      pos += 4
    elif wire == 1:
      yield field, wire, pos, pos + 8
      pos += 8
    else:
      raise ValueError(f"unsupported protobuf wire type {wire}")


class FastTfdsSource:
  """A TFDS array_record data source whose records are parsed without copying the big uint8 tensors.

  TFDS' numpy decoding copies every byte of a record twice (protobuf parse, then a numpy array of the bytes) before
  the pipeline slices a 32-frame clip out of a whole video. This source reads the serialized ``tf.train.Example``
  from array_record and walks its wire format directly: features stored as raw bytes (TFDS ``Encoding.BYTES``
  tensors, e.g. ``video``) become read-only ``np.frombuffer`` views into the record, so only the clip frames are
  ever copied; small features (floats, ints, text) are decoded from the same walk. Use :func:`fast_source`, which
  checks the result against TFDS' own decoding on the first record and falls back to the TFDS source otherwise.
  """

  def __init__(self, source: Any):
    self._source = source
    self._raw = source.data_source
    features = source.dataset_info.features
    self._specs = {}
    for key, feat in features.items():
      info = feat.get_tensor_info()
      encoding = getattr(feat, "_encoding", None)
      as_bytes = bool(getattr(feat, "_encoded_to_bytes", False))
      if as_bytes and str(getattr(encoding, "name", encoding)).upper() not in ("BYTES",):
        raise ValueError(f"feature {key} uses encoding {encoding}; only raw bytes can be viewed")
      self._specs[key] = (np.dtype(info.np_dtype), tuple(-1 if d is None else d for d in info.shape), as_bytes,
                          type(feat).__name__ == "Text")
    if sum(1 for shape in (v[1] for v in self._specs.values()) if shape.count(-1) > 1):
      raise ValueError("ragged features (more than one unknown dimension) are not supported")

  def __len__(self) -> int:
    return len(self._source)

  def __repr__(self) -> str:
    return repr(self._source)

  def _decode(self, key: str, buf: memoryview, start: int, end: int, raw: bytes) -> Any:
    dtype, shape, as_bytes, is_text = self._specs[key]
    values = []
    kind = None
    for field, wire, a, b in _fields(buf, start, end):  # Feature: 1 bytes_list, 2 float_list, 3 int64_list
      kind = field
      for f2, w2, c, d in _fields(buf, a, b):
        if field == 1:
          values.append((c, d))
        elif field == 2:
          values.append(np.frombuffer(raw, "<f4", count=(d - c) // 4, offset=c) if w2 == 2 else
                        np.frombuffer(raw, "<f4", count=1, offset=c))
        else:
          pos, ints = c, []
          if w2 == 2:
            while pos < d:
              v, pos = _varint(buf, pos)
              ints.append(v)
          else:
            ints.append(_varint(buf, c)[0])
          values.append(np.asarray([v - (1 << 64) if v >= 1 << 63 else v for v in ints], np.int64))
    if kind == 1:
      if as_bytes:
        (c, d), = values
        arr = np.frombuffer(raw, dtype, count=(d - c) // dtype.itemsize, offset=c)
        return arr.reshape(shape) if shape else arr[0]
      items = [bytes(buf[c:d]) for c, d in values]
      return items[0] if not shape else np.asarray(items, object).reshape(shape)
    arr = np.concatenate(values) if values else np.zeros((0,), dtype)
    arr = arr.astype(dtype, copy=False)
    return arr.reshape(shape) if shape else arr.reshape(())[()]

  def __getitem__(self, i: int) -> dict:
    raw = self._raw[i]
    buf = memoryview(raw)
    out = {}
    for field, _, a, b in _fields(buf, 0, len(buf)):  # Example.features
      if field != 1:
        continue
      for f2, _, c, d in _fields(buf, a, b):  # Features.feature (map entries)
        if f2 != 1:
          continue
        key, value = None, None
        for f3, _, e, g in _fields(buf, c, d):
          if f3 == 1:
            key = bytes(buf[e:g]).decode()
          elif f3 == 2:
            value = (e, g)
        if key in self._specs and value is not None:
          out[key] = self._decode(key, buf, value[0], value[1], raw)
    missing = set(self._specs) - set(out)
    if missing:
      raise KeyError(f"record {i} lacks features {sorted(missing)}")
    return out


def _same_record(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
  if set(a) != set(b):
    return False
  for k in a:
    x, y = a[k], b[k]
    if isinstance(x, (bytes, str)) or isinstance(y, (bytes, str)):
      if x != y:
        return False
      continue
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or not np.array_equal(x, y):
      return False
  return True


def fast_source(source: Any) -> Any:
  """``FastTfdsSource(source)`` when it decodes the first record exactly as TFDS does, else ``source``."""
  if not hasattr(source, "data_source") or not hasattr(source, "dataset_info") or len(source) == 0:
    return source
  try:
    fast = FastTfdsSource(source)
    if _same_record(fast[0], source[0]):
      return fast
  except Exception:  # any surprise in the wire format: TFDS' own decoding is always correct
    pass
  return source


# ----------------------------------------------------------------------------------------------------------------
# frame store read with pread (no mapping, so resident memory stays at clip scale)


class LazyFrames:
  """A video stored as consecutive uint8 frames at ``offset`` in ``path``; indexing reads only those frames.

  Reads use ``os.pread`` into fresh arrays instead of a memory map: mapped file pages count as the reader's
  resident memory (a pass over a large set would show the whole set as RSS), pread'd pages stay in the page cache.
  ``np.asarray(frames)`` reads the whole video (for frame samplers that inspect pixels).
  """

  __slots__ = ("path", "offset", "shape", "dtype")

  def __init__(self, path: str, offset: int, num_frames: int, frame_shape: tuple[int, ...]):
    self.path = path
    self.offset = int(offset)
    self.shape = (int(num_frames), *frame_shape)
    self.dtype = np.dtype(np.uint8)

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __len__(self) -> int:
    return self.shape[0]

  def take(self, idx: np.ndarray, shift: tuple[int, int] = (0, 0), out: np.ndarray | None = None) -> np.ndarray:
    """Frames ``idx`` (in range) as a new (len(idx), H, W, C) array; consecutive runs are one read each.

    ``shift=(dy, dx)`` returns the frames translated by whole pixels with zero fill (what pad + random crop gives)
    without a second copy: a run of frames is read ``dy * W + dx`` pixels off its place in the flat buffer, and the
    rows and columns that wrapped round from a neighbouring row or frame are zeroed afterwards. ``out`` (a
    C-contiguous uint8 array of the result's shape, e.g. a slot of the batch array) receives the frames in place.
    """
    idx = np.asarray(idx, np.int64).reshape(-1)
    _, h, w = self.shape[:3]
    dy, dx = int(shift[0]), int(shift[1])
    pixel_bytes = int(np.prod(self.shape[3:])) if len(self.shape) > 3 else 1
    frame_bytes = h * w * pixel_bytes
    if out is None:
      out = np.empty((len(idx), *self.shape[1:]), np.uint8)
    elif out.shape != (len(idx), *self.shape[1:]) or out.dtype != np.uint8 or not out.flags.c_contiguous:
      raise ValueError(f"out has shape {out.shape} {out.dtype}; expected C-contiguous {(len(idx), *self.shape[1:])}"
                       " uint8")
    if abs(dy) >= h or abs(dx) >= w:  # shifted out of view entirely
      out[...] = 0
      return out
    s = (dy * w + dx) * pixel_bytes  # byte offset of the shift in a flat run of frames
    flat = out.reshape(-1)
    fd = os.open(self.path, os.O_RDONLY)
    try:
      k = 0
      while k < len(idx):
        j = k
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
          j += 1
        run = (j - k + 1) * frame_bytes
        dst, src = k * frame_bytes + max(s, 0), self.offset + int(idx[k]) * frame_bytes + max(-s, 0)
        want = run - abs(s)
        view = memoryview(flat[dst:dst + want]).cast("B")
        got = 0
        while got < want:
          n = os.preadv(fd, [view[got:]], src + got)
          if n <= 0:
            raise OSError(f"{self.path}: short read at byte {src + got} (frame store truncated?)")
          got += n
        if s > 0:  # the head of the run (and, for s < 0, its tail) was not read
          flat[k * frame_bytes:k * frame_bytes + s] = 0
        elif s < 0:
          flat[(j + 1) * frame_bytes + s:(j + 1) * frame_bytes] = 0
        k = j + 1
    finally:
      os.close(fd)
    if dy > 0:
      out[:, :dy] = 0
    elif dy < 0:
      out[:, h + dy:] = 0
    if dx > 0:
      out[:, :, :dx] = 0
    elif dx < 0:
      out[:, :, w + dx:] = 0
    return out

  def __getitem__(self, key) -> np.ndarray:
    if isinstance(key, (int, np.integer)):
      return self.take(np.asarray([key]))[0]
    return self.take(np.arange(self.shape[0])[key])

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self.take(np.arange(self.shape[0]))
    return out if dtype is None else out.astype(dtype)


class PreadFrameStore:
  """Wraps a :class:`echojax.data.framestore.FrameStoreSource`: same records, ``video`` as :class:`LazyFrames`."""

  def __init__(self, store: Any):
    self._store = store
    self._path = str(store.frames_path)
    self._offsets = np.asarray(store._offsets, np.int64)
    self._frame_shape = tuple(int(d) for d in store.desc["frame_shape"])
    self._frame_bytes = int(np.prod(self._frame_shape))
    self._feature = store.desc.get("feature", "video")

  @staticmethod
  def supports(store: Any) -> bool:
    return all(hasattr(store, a) for a in ("frames_path", "_offsets", "desc")) and hasattr(os, "preadv")

  def __len__(self) -> int:
    return len(self._store)

  def __repr__(self) -> str:
    return repr(self._store)

  def __getitem__(self, i: int) -> dict:
    i = int(i) % len(self)
    rec = dict(self._store[i])  # the memmap view in it is never touched, so no page is mapped in
    start, end = int(self._offsets[i]), int(self._offsets[i + 1])
    rec[self._feature] = LazyFrames(self._path, start * self._frame_bytes, end - start, self._frame_shape)
    return rec


# ----------------------------------------------------------------------------------------------------------------
# row table: which (record, clip) each sample is; eval padding rows


class RowSource:
  """Random-access source of rows ``(record_index, clip_id, start, valid)`` over a base source.

  Each item is ``{"record": base[record_index], "_index", "_clip_id", "_start", "_valid"}``; ``start = -1`` means
  "decide in the transform" (random in training, ``eval_start`` otherwise). Padding rows re-read record 0 and are
  marked invalid. The repr is stable so grain can check a restored iterator state belongs to this source.
  """

  def __init__(self, base: Any, rows: np.ndarray, desc: str):
    self._base = base
    self._rows = np.asarray(rows, np.int64).reshape(-1, 4)
    self._desc = desc
    # clips="all" reads the same record for consecutive rows: keep the last one (one record of memory)
    self._reuse = len(np.unique(self._rows[:, 0])) < len(self._rows)
    self._last: tuple[int, Any] | None = None

  def __getstate__(self) -> dict:
    state = dict(self.__dict__)
    state["_last"] = None
    return state

  def __len__(self) -> int:
    return len(self._rows)

  def _record(self, rec: int) -> Any:
    if not self._reuse:
      return self._base[rec]
    last = self._last  # one atomic read: safe with grain's reader threads
    if last is not None and last[0] == rec:
      return last[1]
    record = self._base[rec]
    self._last = (rec, record)
    return record

  def __getitem__(self, i: int) -> dict:
    rec, clip_id, start, valid = (int(v) for v in self._rows[i])
    return {"record": self._record(rec), "_index": rec if valid else -1, "_clip_id": clip_id if valid else -1,
            "_start": start, "_valid": bool(valid)}

  def __repr__(self) -> str:
    return f"RowSource({self._desc}, rows={len(self._rows)})"


def _source_desc(source: Any) -> str:
  r = repr(source)
  if " at 0x" in r or len(r) > 300:  # object default repr is not stable across processes
    return f"{type(source).__name__}(len={len(source)})"
  return r


def clip_starts(num_frames: int, frames: int, period: int, stride: int) -> list[int]:
  """Starts of all clips of a video: every ``stride`` frames, plus one ending at the last frame (covers it all)."""
  span = (frames - 1) * period + 1
  last = max(num_frames - span, 0)
  starts = list(range(0, last + 1, max(stride, 1)))
  if starts[-1] != last:
    starts.append(last)
  return starts


def _num_frames(record: Mapping[str, Any]) -> int:
  if "num_frames" in record:
    return int(record["num_frames"])
  video = record["video"]
  return int(video.shape[0] if hasattr(video, "shape") else np.asarray(video).shape[0])


def _all_clip_rows(source: Any, frames: int, period: int, stride: int) -> np.ndarray:
  """Rows for clips='all' (reads each record once for its length, with a progress bar for big splits)."""
  from tqdm import tqdm

  rows = []
  for i in tqdm(range(len(source)), desc="counting clips", unit="video", leave=False, disable=len(source) < 200):
    for c, s in enumerate(clip_starts(_num_frames(source[i]), frames, period, stride)):
      rows.append((i, c, s, 1))
  return np.asarray(rows, np.int64).reshape(-1, 4)


# ----------------------------------------------------------------------------------------------------------------
# per-sample transforms (module level so grain workers can pickle them)


def _frame_indices(num_frames: int, opts: Mapping[str, Any], start: int, train: bool,
                   rng: np.random.Generator) -> np.ndarray:
  frames, period = int(opts["frames"]), int(opts["period"])
  span = (frames - 1) * period + 1
  if start < 0:
    last = max(num_frames - span, 0)
    if train:
      start = int(rng.integers(0, last + 1))
    else:
      start = 0 if opts["eval_start"] == "zero" else last // 2
  return start + np.arange(frames, dtype=np.int64) * period


def _gather(video: np.ndarray, idx: np.ndarray, pad_mode: str, shift: tuple[int, int] = (0, 0),
            out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Slice frames ``idx`` (uint8, only those frames are copied) -> (clip, mask); out-of-range -> padding.
  ``shift`` (dy, dx): integer translation with zero fill, and ``out``: the array to read into; both are done
  during the read, so they need :class:`LazyFrames`."""
  n = video.shape[0]
  mask = (idx >= 0) & (idx < n)
  if isinstance(video, LazyFrames):
    clip = video.take(np.clip(idx, 0, n - 1), shift=shift, out=out)
  else:
    if shift != (0, 0) or out is not None:
      raise ValueError("a shift or an out array during the read needs LazyFrames")
    clip = video[np.clip(idx, 0, n - 1)]
  if pad_mode == "zeros" and not mask.all():
    clip[~mask] = 0
  return clip, mask


def _resize(clip: np.ndarray, size: int | None) -> np.ndarray:
  if not size or clip.shape[1:3] == (size, size):
    return clip
  c = clip.shape[-1]
  return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, c) for f in clip])


class ClipTransform(grain.RandomMapTransform):
  """Row -> one sample dict: slice the clip (or frame), augment, normalise, copy targets."""

  def __init__(self, opts: Mapping[str, Any], mean: np.ndarray, std: np.ndarray, train: bool,
               frame_sampler: FrameSampler | None):
    self.opts = dict(opts)
    self.mean = np.asarray(mean, np.float32)
    self.inv_std = (1.0 / np.asarray(std, np.float32)).astype(np.float32)
    self.train = train
    self.frame_sampler = frame_sampler
    self.image = opts["preset"] == "image"

  def _normalise(self, x: np.ndarray) -> None:
    """In place (x - mean) / std per channel. Done on a (rows, W*C) view with the stats tiled along W, so numpy's
    inner loop runs over W*C elements instead of C (about 15x faster than broadcasting over a trailing axis of 3)."""
    w, c = x.shape[-2], x.shape[-1]
    if c != self.mean.shape[0] and self.mean.shape[0] != 1:
      raise UserError(f"frames have {c} channels but {STATS_FILE} has {self.mean.shape[0]} means; "
                      "re-run `python -m echojax.data.prepare` for this dataset")
    key = (w, c)
    if getattr(self, "_tiled_key", None) != key:
      self._tiled_mean = np.ascontiguousarray(np.broadcast_to(self.mean, (w, c)).reshape(-1))
      self._tiled_inv = np.ascontiguousarray(np.broadcast_to(self.inv_std, (w, c)).reshape(-1))
      self._tiled_key = key
    rows = x.reshape(-1, w * c)
    rows -= self._tiled_mean
    rows *= self._tiled_inv

  def _indices(self, record: Mapping[str, Any], start: int, rng: np.random.Generator) -> np.ndarray:
    if self.frame_sampler is not None:
      # evaluation passes no generator: samplers pick deterministically (the ECG sampler: the first cycle)
      return np.asarray(self.frame_sampler(record, rng if self.train else None), np.int64).reshape(-1)
    n = _num_frames(record)
    if not self.image:
      return _frame_indices(n, self.opts, start, self.train, rng)
    mode = self.opts["image_frame"]
    if mode == "random" and self.train:
      return np.asarray([rng.integers(0, n)])
    if mode in ("ed", "es") and int(record.get(f"{mode}_frame", -1)) >= 0:
      return np.asarray([int(record[f"{mode}_frame"])])
    return np.asarray([n // 2])

  def _clip(self, video: Any, idx: np.ndarray, params: aug.AugmentParams | None,
            out: np.ndarray | None = None) -> np.ndarray:
    """Frames ``idx`` of ``video`` -> the augmented (and, for normalize='host', normalised) clip (T, H, W, C),
    written into ``out`` when given. Order: read, resize, geometric augmentation, intensity, normalise. A pure
    integer shift of a :class:`LazyFrames` video that needs no resize is done by the read itself, and uint8 clips
    (normalize='device') are then read straight into ``out``: one copy from the page cache, none after."""
    device, size = self.opts["normalize"] == "device", self.opts["size"]
    resize = bool(size) and tuple(video.shape[1:3]) != (size, size)
    lazy = isinstance(video, LazyFrames) and not resize
    fused = lazy and params is not None and params.is_integer_shift and not params.flip
    geometric = params is not None and not fused and not params.is_geometric_identity
    direct = out if device and lazy and not geometric else None
    clip, _ = _gather(video, idx, self.opts["pad_mode"],
                      shift=(int(params.dy), int(params.dx)) if fused else (0, 0), out=direct)
    clip = _resize(clip, size)
    if geometric:
      clip = aug.apply_geometric(clip, params)
    if device:
      if out is None or clip is out:
        return clip
      out[...] = clip
      return out
    if out is None:
      out = clip.astype(np.float32)
    else:
      out[...] = clip
    if params is not None:
      aug.apply_intensity(out, params)
    self._normalise(out)
    return out

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    record = element["record"]
    if self.image and "image" in record:
      video = np.asarray(record["image"])
      video = video[None, ..., None] if video.ndim == 2 else video[None]
      idx = np.zeros(1, np.int64)
    else:
      if "video" not in record:
        raise UserError(f"records have no 'video' (or 'image') feature; features present: {sorted(record)}; "
                        "check config fields data.name and data.preset")
      video = record["video"]
      if not isinstance(video, LazyFrames):
        video = np.asarray(video)
        if video.ndim == 3:
          video = video[..., None]
      idx = self._indices(record, int(element["_start"]), rng)
    mask = (idx >= 0) & (idx < video.shape[0])
    size = self.opts["size"]
    h, w = (size, size) if size else video.shape[1:3]
    params = aug.sample_params(rng, self.opts["augment"], h, w) if self.train and self.opts["augment"] else None
    if isinstance(video, LazyFrames):  # read when the batch is assembled, straight into the batch array
      x = PendingClip(self, video, idx, params, (len(idx), h, w, video.shape[3]))
    else:
      x = self._clip(video, idx, params)
    out: dict[str, Any] = {
        "valid": np.bool_(element["_valid"]),
        "index": np.int32(element["_index"]),
    }
    if self.image:
      out["image"] = x.frame() if isinstance(x, PendingClip) else x[0]
    else:
      out["video"] = x
      out["mask"] = mask & bool(element["_valid"])
    if self.opts["clips"] == "all" and not self.train:
      out["clip_id"] = np.int32(element["_clip_id"])
    for key in self.opts["targets"] or [k for k in ("ef", "label") if k in record]:
      if key not in record:
        raise UserError(f"target {key!r} (config field data.targets) is not a feature of the records; features "
                        f"present: {sorted(record)}")
      v = np.asarray(record[key])
      out[key] = v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) or v.dtype == bool else v.astype(np.float32)
    return out


class PendingClip:
  """A sample's clip, made when its batch is assembled (:func:`batch_samples`) directly in the batch array.

  Everything random about it (frame indices, augmentation draws) was decided in ``ClipTransform.random_map``; what
  is left is deterministic work: read, augment, normalise. Deferring it lets uint8 clips be read straight into
  their slot of the batch, instead of into a fresh per-clip array that is then stacked (fresh multi-megabyte
  arrays cost page faults on every first touch; on the dev machine they were most of the pipeline's time).
  ``frame()`` marks a still-image sample (the slot is (H, W, C), the clip one frame).
  """

  __slots__ = ("transform", "video", "idx", "params", "shape", "image")

  def __init__(self, transform: ClipTransform, video: LazyFrames, idx: np.ndarray,
               params: aug.AugmentParams | None, shape: tuple[int, ...], image: bool = False):
    self.transform, self.video, self.idx, self.params = transform, video, idx, params
    self.shape = tuple(int(d) for d in shape)
    self.image = image

  def frame(self) -> "PendingClip":
    return PendingClip(self.transform, self.video, self.idx, self.params, self.shape[1:], image=True)

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(np.uint8 if self.transform.opts["normalize"] == "device" else np.float32)

  def write(self, out: np.ndarray) -> np.ndarray:
    self.transform._clip(self.video, self.idx, self.params, out[None] if self.image else out)
    return out

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self.write(np.empty(self.shape, self.dtype))
    return out if dtype is None else out.astype(dtype)


def batch_samples(samples: list[dict]) -> dict:
  """grain ``batch_fn``: stack each key of the sample dicts; :class:`PendingClip` values are written into one newly
  allocated batch array (no per-clip arrays, no stacking copy)."""
  out = {}
  for key in samples[0]:
    vals = [s[key] for s in samples]
    pending = [v for v in vals if isinstance(v, PendingClip)]
    if not pending:
      out[key] = np.stack(vals)
      continue
    arr = np.empty((len(vals), *pending[0].shape), pending[0].dtype)
    for i, v in enumerate(vals):
      if isinstance(v, PendingClip):
        v.write(arr[i])
      else:
        arr[i] = v
    out[key] = arr
  return out


# ----------------------------------------------------------------------------------------------------------------
# loader


class Loader:
  """Iterable over fixed-shape batches with grain's checkpointable iterator state.

  ``iter(loader)`` continues the current pass (train: infinite). An eval loader starts a new pass once the
  previous one is exhausted, so ``for batch in loader`` can be repeated for every evaluation.
  """

  def __init__(self, dataloader: grain.DataLoader, *, train: bool, num_examples: int, num_rows: int,
               local_batch_size: int, global_batch_size: int, process_index: int, process_count: int,
               opts: dict, source: Any = None):
    self.dataloader = dataloader
    self.source = source  # the split's random-access source (records), for targets()
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
  """Loader over any random-access ``source`` (``len`` + ``__getitem__`` -> feature dict); see make_loader."""
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
  else:
    if opts["clips"] == "all" and opts["preset"] == "video_clip" and frame_sampler is None:
      stride = int(opts["clip_stride"] or int(opts["frames"]) * int(opts["period"]))
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
  ops = [ClipTransform(opts, stats[0], stats[1], train, frame_sampler),
         grain.Batch(batch_size=local_b, drop_remainder=train, batch_fn=batch_samples)]
  dl = grain.DataLoader(data_source=row_source, sampler=sampler, operations=ops,
                        worker_count=int(opts["worker_count"]), worker_buffer_size=int(opts["worker_buffer_size"]),
                        read_options=grain.ReadOptions(num_threads=int(opts["read_threads"]),
                                                       prefetch_buffer_size=int(opts["prefetch"])))
  return Loader(dl, train=train, num_examples=num_examples, num_rows=num_rows, local_batch_size=local_b,
                global_batch_size=global_b, process_index=p, process_count=n, opts=opts, source=source)


def make_loader(data_cfg: Any, split: str, *, train: bool, seed: int, process_index: int | None = None,
                process_count: int | None = None, frame_sampler: FrameSampler | None = None) -> Loader:
  """Loader over the prepared ``split`` of ``data_cfg.name`` (see the module docstring for the fields).

  ``process_index``/``process_count`` default to JAX's; process p of n reads a disjoint shard of the split and
  the shards together cover it. ``frame_sampler`` overrides ``data_cfg.frame_sampler`` with a callable.
  """
  source, version_dir = open_source(data_cfg, split)
  feature = "image" if _cfg_get(data_cfg, "preset") == "image" else "video"
  stats = load_stats(version_dir / STATS_FILE, feature)
  return build_loader(source, stats, data_cfg, split, train=train, seed=seed, process_index=process_index,
                      process_count=process_count, frame_sampler=frame_sampler)


def input_normalization(data_cfg: Any) -> tuple[np.ndarray, np.ndarray] | None:
  """(mean, std) in [0, 255] units when ``data.normalize='device'`` (uint8 batches, normalised inside the jitted
  step: 4x less host memory traffic per clip), else None (batches are already normalised float32)."""
  if _cfg_get(data_cfg, "normalize") != "device":
    return None
  _, version_dir = open_source(data_cfg, "train")
  feature = "image" if _cfg_get(data_cfg, "preset") == "image" else "video"
  return load_stats(version_dir / STATS_FILE, feature)


def batch_shapes(loader: Loader) -> dict[str, tuple[tuple[int, ...], str]]:
  """Shapes/dtypes of one batch (for eval_shape / init) without consuming the loader's stream."""
  probe = Loader(loader.dataloader, train=loader.train, num_examples=loader.num_examples,
                 num_rows=loader.num_rows, local_batch_size=loader.local_batch_size,
                 global_batch_size=loader.global_batch_size, process_index=loader.process_index,
                 process_count=loader.process_count, opts=loader.options, source=loader.source)
  batch = next(probe)
  return {k: (tuple(v.shape), str(v.dtype)) for k, v in batch.items()}
