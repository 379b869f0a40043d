"""Test-only pieces for the trainer tests: a tiny video model, an in-memory loader that follows the pipeline
contract (docs/ARCHITECTURE.md), and a config (``--config tests/helpers/trainer.py:smoke``).

The loader's videos are a deterministic function of the record index; EF is a function of the video's
brightness, so the tiny model can learn it. Train iteration is an endless, per-epoch shuffled stream whose
position (epoch, offset) is the iterator state, like a grain iterator.
"""

from __future__ import annotations

import json
import time

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from echojax.config import parse_arg
from echojax.data import datasets
from echojax.models import registry


class TinyVideoNet(nn.Module):
  """Conv3D -> BatchNorm -> ReLU -> Dropout -> global mean -> Dense "head" (BN + dropout exercise state/RNG)."""

  num_classes: int = 1
  width: int = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.width, (3, 3, 3), strides=(1, 2, 2), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    x = nn.Dropout(0.1, deterministic=not train)(x)
    x = jnp.mean(x, axis=(1, 2, 3))
    x = nn.Dense(self.width * 2)(x)
    return nn.Dense(self.num_classes, name="head")(nn.relu(x)), {"features": x}


if "tiny_video_net" not in registry._MODELS:
  registry.register("tiny_video_net")(TinyVideoNet)


def record(i: int, frames: int, size: int) -> tuple[np.ndarray, float]:
  rng = np.random.default_rng(1000 + i)
  level = (i * 37 % 100) / 100.0
  video = rng.normal(level, 0.3, (frames, size, size, 3)).astype(np.float32)
  return video, float(20.0 + 55.0 * level)


class FakeLoader:
  """Pipeline-contract loader over ``num`` synthetic records (see module docstring)."""

  def __init__(self, cfg, split: str, *, train: bool, seed: int, process_index=None, process_count=None):
    self.cfg, self.split, self.train, self.seed = cfg, split, train, seed
    self.num = int(cfg.num_train if split == "train" else cfg.num_val)
    self.offset = 0 if split == "train" else 10_000
    pc = process_count or 1
    self.local_batch = int(cfg.batch_size) // pc
    self.pos = {"epoch": 0, "offset": 0}
    self.served = 0
    self.clips = cfg.get("clips", 1)
    self.file_names = [f"{split}_{i:04d}" for i in range(self.num)]

  def _batch(self, ids, clip_ids=None, valid=None) -> dict:
    vids, efs = zip(*[record(self.offset + int(i), self.cfg.frames, self.cfg.size) for i in ids])
    video = np.stack(vids)
    if clip_ids is not None:  # a second "clip" is the video reversed in time
      video = np.stack([v[::-1] if c else v for v, c in zip(video, clip_ids)])
    b = len(ids)
    batch = {"video": video, "ef": np.asarray(efs, np.float32), "label": (np.asarray(efs) >= 50).astype(np.int32),
             "mask": np.ones((b, self.cfg.frames), bool), "index": np.asarray(ids, np.int32),
             "valid": np.ones(b, bool) if valid is None else valid}
    if clip_ids is not None:
      batch["clip_id"] = np.asarray(clip_ids, np.int32)
    return batch

  def __iter__(self):
    if self.train:
      return self._train_iter()
    return self._eval_iter()

  def _train_iter(self):
    while True:
      perm = np.random.default_rng([self.seed, self.pos["epoch"]]).permutation(self.num)
      while self.pos["offset"] + self.local_batch <= self.num:
        ids = perm[self.pos["offset"]:self.pos["offset"] + self.local_batch]
        self.pos["offset"] += self.local_batch
        if self.cfg.get("sleep", 0.0):
          time.sleep(self.cfg.sleep)
        batch = self._batch(ids)
        self.served += 1
        if self.served == self.cfg.get("nan_at_batch", -1):  # injected fault for the non-finite test
          batch["video"][:] = np.nan
        yield batch
      self.pos = {"epoch": self.pos["epoch"] + 1, "offset": 0}

  def _eval_iter(self):
    nclips = 2 if self.clips == "all" else 1
    items = [(i, c) for i in range(self.num) for c in range(nclips)]
    for s in range(0, len(items), self.local_batch):
      chunk = items[s:s + self.local_batch]
      valid = np.zeros(self.local_batch, bool)
      valid[:len(chunk)] = True
      chunk = chunk + [chunk[-1]] * (self.local_batch - len(chunk))
      yield self._batch([i for i, _ in chunk], [c for _, c in chunk], valid)

  def __len__(self):
    return self.num // self.local_batch

  def get_state(self) -> bytes:
    return json.dumps(self.pos).encode()

  def set_state(self, state: bytes) -> None:
    self.pos = json.loads(state)

  def targets(self, keys):
    efs = np.asarray([record(self.offset + i, 1, 2)[1] for i in range(self.num)], np.float32)
    return {k: efs for k in keys}


def make_loader(cfg, split, *, train, seed, process_index=None, process_count=None):
  return FakeLoader(cfg, split, train=train, seed=seed, process_index=process_index, process_count=process_count)


# config files are imported by load_config, so runs find it; the fake loader's own data fields and their defaults
datasets.register_loader("fake", make_loader, options={"num_train": 32, "num_val": 12, "sleep": 0.0,
                                                       "nan_at_batch": -1})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Tiny EF-regression run on the fake loader (``smoke``); ``task=ef_classification|classification``."""
  a = parse_arg(arg, smoke=False, task="ef_regression")
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({"kind": a.task})
  if a.task == "ef_classification":
    c.task.class_weights = "balanced"
  if a.task == "classification":
    c.task.num_classes = 2
    c.task.class_names = ["low", "normal"]
    c.task.label_smoothing = 0.1
  c.data = ml_collections.ConfigDict({"name": "fake", "data_dir": "in-memory", "batch_size": 8, "frames": 4,
                                      "size": 8})
  c.model = ml_collections.ConfigDict({"name": "tiny_video_net", "kwargs": {"width": 4}})
  c.optim = ml_collections.ConfigDict({"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4,
                                       "schedule": "step", "decay_every_epochs": 2.0, "decay_factor": 0.5})
  c.train = ml_collections.ConfigDict({"num_steps": 6, "log_every": 2, "checkpoint_every": 2})
  c.evals = {"val": {"every_steps": 3, "every_epochs": 0.0}}
  return c
