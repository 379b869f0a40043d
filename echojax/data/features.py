"""A prepared features dataset (key-frame backbone features, seed 004) and its loader for the trainer.

    python -m echojax.features --out FEATS ...                  # writes it (echojax/features.py)
    feats = read_features(FEATS, "train")                       # {"features": (N, F, D), "ef": (N,), ...}
    --config.data.name=keyframe_features --config.data.data_dir=FEATS --config.data.feature_frame=es

Layout of a features folder::

    FEATS/features.json                 what it came from: backbone, weights (+ sha256), data, frames, dim, splits
    FEATS/<split>/shard_00000.npz       one shard per ``shard_size`` records, written whole (tmp file + rename)

A shard holds, per record of the prepared split (in the split's order): ``features`` float32 (n, F, D) (F = the
frames of ``features.json["frames"]``, e.g. ed, es, mid), ``frame_index`` int32 (n, F) (the frame of the video each
came from), ``frame_source`` str (n,) (``KeyFrames.source``: "tracings" or how they were estimated), ``index``
int32 (n,) (record index in the prepared split), ``file_name`` str (n,), and the records' scalar targets (``ef``,
``esv``, ``edv``, ...).

The loader (``data.name = "keyframe_features"``, registered here; ``echojax.data.datasets`` imports this module
when the name is looked up) serves ``features`` (B, D) of one frame (``data.feature_frame``; "concat" joins all
frames into (B, F*D)), the targets, ``index`` and ``valid``, under the pipeline's contract: train = endless
per-epoch shuffled stream with an (epoch, offset) iterator state; eval = one ordered pass padded to whole batches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from echojax.errors import UserError

NAME = "keyframe_features"
MANIFEST = "features.json"
OPTIONS = {"feature_frame": "es"}  # the loader's own config.data fields and their defaults


def manifest(features_dir: str | Path) -> dict:
  """``features.json`` of a features folder; UserError naming the folder when it is not one."""
  path = Path(features_dir) / MANIFEST
  if not path.is_file():
    raise UserError(f"{path} not found: config field data.data_dir must be a features folder written by "
                    "`python -m echojax.features --out DIR` (or the key-frame study, python -m echojax.keyframe_study)")
  return json.loads(path.read_text())


def shard_paths(features_dir: str | Path, split: str) -> list[Path]:
  return sorted((Path(features_dir) / split).glob("shard_*.npz"))


def read_features(features_dir: str | Path, split: str) -> dict[str, np.ndarray]:
  """Every shard of ``split`` concatenated, in record order. UserError when the split is missing or incomplete
  (an interrupted extraction: rerun the command, it resumes)."""
  info = manifest(features_dir)
  splits = info.get("splits", {})
  if split not in splits:
    raise UserError(f"split {split!r} is not in the features folder {features_dir} (it has "
                    f"{', '.join(sorted(splits)) or 'no splits'}); config fields data.train_split / evals.*.split")
  if not splits[split].get("complete"):
    raise UserError(f"split {split!r} of {features_dir} is incomplete (the extraction was interrupted); rerun the "
                    "same `python -m echojax.features` command: it resumes from the last whole shard")
  parts = [dict(np.load(p, allow_pickle=False)) for p in shard_paths(features_dir, split)]
  out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  if len(out["index"]) != splits[split]["num"]:
    raise UserError(f"{features_dir}/{split} holds {len(out['index'])} records, features.json says "
                    f"{splits[split]['num']}: a shard is missing; rerun the extraction into a new --out folder")
  return out


def frame_features(feats: dict[str, np.ndarray], frames: list[str], which: str) -> np.ndarray:
  """(N, D) features of frame ``which`` (one of ``frames``), or (N, F*D) for ``"concat"``."""
  x = feats["features"]
  if which == "concat":
    return x.reshape(len(x), -1)
  if which not in frames:
    raise UserError(f"config field data.feature_frame={which!r}: this features folder has frames "
                    f"{', '.join(frames)} (or use concat)")
  return x[:, frames.index(which)]


class FeatureLoader:
  """The pipeline contract over a features split held in memory (module docstring)."""

  def __init__(self, data_cfg: Any, split: str, *, train: bool, seed: int, process_index: int | None = None,
               process_count: int | None = None):
    self.dir = str(data_cfg.data_dir)
    info = manifest(self.dir)
    feats = read_features(self.dir, split)
    self.split, self.train, self.seed = split, train, int(seed)
    self.x = np.ascontiguousarray(frame_features(feats, list(info["frames"]), str(data_cfg.feature_frame)),
                                  np.float32)
    self.targets_ = {k: v for k, v in feats.items() if k not in ("features",)}
    self.num_examples = len(self.x)
    pc, pi = int(process_count or 1), int(process_index or 0)
    b = int(data_cfg.batch_size)
    if b % pc:
      raise UserError(f"config field data.batch_size={b} must be divisible by the {pc} processes")
    self.global_batch_size, self.local_batch_size, self.pi = b, b // pc, pi
    if train and self.num_examples < b:
      raise UserError(f"config field data.batch_size={b} is larger than the {self.num_examples} records of split "
                      f"{split!r} in {self.dir}; lower data.batch_size")
    self.keys = [k for k, v in self.targets_.items() if v.dtype.kind in "biuf" and v.ndim == 1]
    self.pos = {"epoch": 0, "offset": 0}

  @property
  def steps_per_epoch(self) -> int:
    if self.train:
      return max(self.num_examples // self.global_batch_size, 1)
    return -(-self.num_examples // self.global_batch_size)

  def __len__(self) -> int:
    if self.train:
      raise TypeError("a training loader is infinite; use loader.steps_per_epoch")
    return self.steps_per_epoch

  def _batch(self, ids: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    lo = self.pi * self.local_batch_size  # this process's rows of the global batch
    ids, valid = ids[lo:lo + self.local_batch_size], valid[lo:lo + self.local_batch_size]
    out = {"features": self.x[ids], "valid": valid.copy(),
           "index": np.where(valid, ids, -1).astype(np.int32)}
    for k in self.keys:
      out[k] = self.targets_[k][ids]
    return out

  def __iter__(self):
    return self._train_iter() if self.train else self._eval_iter()

  def _train_iter(self):
    b = self.global_batch_size
    while True:
      perm = np.random.default_rng([self.seed, self.pos["epoch"]]).permutation(self.num_examples)
      while self.pos["offset"] + b <= self.num_examples:
        ids = perm[self.pos["offset"]:self.pos["offset"] + b]
        self.pos["offset"] += b
        yield self._batch(ids, np.ones(b, bool))
      self.pos = {"epoch": self.pos["epoch"] + 1, "offset": 0}

  def _eval_iter(self):
    b, n = self.global_batch_size, self.num_examples
    for s in range(0, n, b):
      ids = np.arange(s, s + b)
      valid = ids < n
      yield self._batch(np.where(valid, ids, n - 1), valid)

  def spec(self) -> dict[str, Any]:
    import jax

    one = self._batch(np.zeros(self.global_batch_size, np.int64), np.ones(self.global_batch_size, bool))
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in one.items()}

  def get_state(self) -> bytes:
    return json.dumps(self.pos).encode()

  def set_state(self, state: bytes | str) -> None:
    pos = json.loads(state)
    if set(pos) != {"epoch", "offset"}:
      raise UserError(f"data iterator state {pos} was not written by the {NAME} loader")
    self.pos = pos

  def targets(self, keys) -> dict[str, np.ndarray]:
    keys = [keys] if isinstance(keys, str) else list(keys)
    missing = [k for k in keys if k not in self.targets_]
    if missing:
      raise UserError(f"target {missing[0]!r} is not in the features folder {self.dir} (it has "
                      f"{', '.join(sorted(self.targets_))}); check config fields task.*")
    return {k: self.targets_[k] for k in keys}


def make_loader(data_cfg, split, *, train, seed, process_index=None, process_count=None) -> FeatureLoader:
  return FeatureLoader(data_cfg, split, train=train, seed=seed, process_index=process_index,
                       process_count=process_count)


def _register() -> None:
  from echojax.data import datasets

  datasets.register_loader(NAME, make_loader, OPTIONS)


_register()
