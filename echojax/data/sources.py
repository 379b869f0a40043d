"""Record sources: the prepared split as a random-access source (:func:`open_source`), the zero-copy TFDS
array_record decoder (:class:`FastTfdsSource`, :func:`fast_source`) and the row table the loader samples from
(:class:`RowSource`)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echojax.data.frames import PreadFrameStore
from echojax.data.options import _cfg_get, _to_dict
from echojax.errors import UserError


def open_source(data_cfg: Any, split: str) -> tuple[Any, Path]:
  """Open the prepared split as a random-access source (no TensorFlow) -> (source, prepared version folder).

  Prefers the split's memmap frame store (:mod:`echojax.data.framestore`, written by ``prepare``), whose ``video``
  is a view of the frames on disk; otherwise the TFDS array_record source, read through :func:`fast_source`.
  """
  import tensorflow_datasets as tfds  # heavy import; only when reading prepared data

  from echojax.data.datasets import DATASETS

  split_file = _cfg_get(data_cfg, "split_file")
  if split_file:
    subset = read_split_file(split_file).get(split)
    if subset is not None:
      base, version_dir = open_source({**_to_dict(data_cfg), "split_file": None}, subset["of"])
      return SubsetSource(base, subset["indices"], f"{split_file}:{split}"), version_dir
  name = _cfg_get(data_cfg, "name")
  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r} (config field data.name); known: {', '.join(sorted(DATASETS))}")
  info = DATASETS[name]
  builder_config = (_cfg_get(data_cfg, "builder_config") or _cfg_get(data_cfg, "config")
                    or info.default_config)
  builder_config = None if builder_config is None else str(builder_config)  # an override 448 arrives as an int
  data_dir = _cfg_get(data_cfg, "data_dir")
  if not data_dir:
    from echojax.data.prepare import ensure_synthetic

    num = _cfg_get(data_cfg, "synthetic_num")  # the set the trainer makes for this config (train.resolve_data)
    data_dir = ensure_synthetic(name, builder_config, num=None if num is None else int(num),
                                seed=int(_cfg_get(data_cfg, "synthetic_seed") or 0))
  importlib.import_module(info.builder_module)
  prepare_cmd = (f"python -m echojax.data.prepare {name} --manual-dir RAW --data-dir {data_dir}"
                 + (f" --config {builder_config}" if builder_config else ""))
  try:
    builder = tfds.builder(name, config=builder_config, data_dir=str(data_dir))
  except Exception as e:  # tfds raises many types for a wrong name/config/folder
    raise UserError(f"could not open prepared dataset {name} (config {builder_config}) in {data_dir}: {e}. Prepare "
                    f"it with `{prepare_cmd}`{_other_configs_hint(data_dir, name, builder_config)}")
  version_dir = Path(builder.data_dir)
  if not (version_dir / "dataset_info.json").exists():
    raise UserError(f"dataset {name} (config {builder_config}) is not prepared in {data_dir} (config field "
                    f"data.data_dir): run `{prepare_cmd}` first"
                    f"{_other_configs_hint(data_dir, name, builder_config)}")
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


class SubsetSource:
  """Records ``indices`` of a random-access ``base`` source, in that order (a split of ``data.split_file``)."""

  def __init__(self, base: Any, indices, name: str):
    self._base, self.indices, self._name = base, np.asarray(indices, np.int64), name
    n = len(base)
    bad = self.indices[(self.indices < 0) | (self.indices >= n)]
    if len(bad):
      raise UserError(f"{name}: record indices {bad[:5].tolist()} are outside the {n} records of the prepared "
                      "split (config field data.split_file): was the data prepared again since the file was written? "
                      "Write the split file anew (echojax.cv does so for each run)")

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i: int) -> Any:
    return self._base[int(self.indices[i])]

  def __repr__(self) -> str:  # stable (grain checks a restored iterator state against it)
    return f"SubsetSource({self._name}, n={len(self.indices)}, first={self.indices[:3].tolist()})"


def read_split_file(path: str | Path) -> dict[str, dict]:
  """``{split name: {"of": prepared split, "indices": [...]}}`` of a ``data.split_file``; UserError naming the file
  and the field when it is missing or malformed."""
  path = Path(path)
  try:
    splits = json.loads(path.read_text())["splits"]
  except FileNotFoundError:
    raise UserError(f"{path} (config field data.split_file) does not exist") from None
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise UserError(f"{path} (config field data.split_file) is not a split file ({e}); it must be JSON "
                    '{"splits": {"<name>": {"of": "<prepared split>", "indices": [...]}}}') from None
  for name, sub in splits.items():
    if not isinstance(sub, dict) or not isinstance(sub.get("of"), str) or not isinstance(sub.get("indices"), list):
      raise UserError(f"{path}: split {name!r} needs \"of\" (a prepared split name) and \"indices\" (a list of "
                      "record indices)")
  return splits


def write_split_file(path: str | Path, splits: Mapping[str, tuple[str, Any]], **extra: Any) -> Path:
  """Write a ``data.split_file``: ``splits`` = {name: (prepared split, record indices)}; ``extra`` keys (e.g. the
  patients of each subset) are stored beside ``splits`` for people to read."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  doc = {"splits": {k: {"of": of, "indices": [int(i) for i in idx]} for k, (of, idx) in splits.items()}, **extra}
  path.write_text(json.dumps(doc, indent=1))
  return path


def _other_configs_hint(data_dir: Any, name: str, builder_config: Any) -> str:
  """"; or use the prepared config 112 and let the loader resize: ..." when other configs of ``name`` are prepared
  in ``data_dir`` (a demo config asks for 28 px, the user prepared the real data at 112)."""
  root = Path(str(data_dir)) / name
  found = sorted({p.parent.parent.name for p in root.glob("*/*/dataset_info.json")} - {str(builder_config)})
  if not found:
    return ""
  size = f" --config.data.size={builder_config}" if str(builder_config).isdigit() else ""
  return (f"; or use what is prepared there ({', '.join(found)}), resized by the loader: "
          f"--config.data.builder_config={found[-1]}{size}")


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
