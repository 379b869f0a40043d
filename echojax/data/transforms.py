"""Per-sample transforms and batching (module level, so grain worker processes can pickle them): a row becomes a
sample dict (:class:`ClipTransform`), whose clip may be a :class:`PendingClip` that :func:`batch_samples` reads
straight into the batch array."""

from __future__ import annotations

from typing import Any, Mapping

import grain.python as grain
import numpy as np

from echojax.data import augment as aug
from echojax.data.frames import LazyFrames, _frame_indices, _gather, _num_frames, _resize
from echojax.data.keyframes import KEY_FRAMES, key_frames
from echojax.data.options import STATS_FILE
from echojax.data.samplers import FrameSampler
from echojax.errors import UserError


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
    if mode in KEY_FRAMES:  # tracings, else estimated from the ECG or intensity cycle (echojax.data.keyframes)
      return np.asarray([key_frames(record).index(mode)])
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
    if self.opts["clips"] in ("all", "beats") and not self.train:
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
