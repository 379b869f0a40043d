"""Frames of prepared videos: the pread frame-store reader (:class:`LazyFrames`, :class:`PreadFrameStore`), frame
gathering and resizing, and the clip tables (which frames a clip takes; every clip start of a video)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import cv2
import numpy as np


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
# clip tables and frame slicing


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


def beat_clip_starts(record: Mapping[str, Any], frames: int, period: int) -> tuple[list[int], str]:
  """Starts of the per-beat clips of a cine and where the beats came from: one clip per complete plausible
  cardiac cycle (``echojax.data.ecg.sampler.record_phases``: stored R peaks, then the stored ECG, then the
  intensity cycle), starting at the cycle's end-diastole, moved back to fit when it would run past the last frame
  (a moved clip that equals the previous one is dropped). No cycle: ``([], "none")``."""
  from echojax.data.ecg.sampler import record_phases

  n = _num_frames(record)
  phases = record_phases(record)
  last = max(n - ((frames - 1) * period + 1), 0)
  starts: list[int] = []
  for ed, _, _ in phases.cycles(n):
    s = min(int(ed), last)
    if not starts or s != starts[-1]:
      starts.append(s)
  return starts, (phases.source if starts else "none")


def _beat_clip_rows(source: Any, frames: int, period: int, stride: int) -> tuple[np.ndarray, dict[str, int]]:
  """Rows for clips='beats' (reads each whole record once to find its beats) and how many records took their
  beats from each source; a record without a beat falls back to its clips='all' rows (counted as "none")."""
  from tqdm import tqdm

  rows, sources = [], {}
  for i in tqdm(range(len(source)), desc="finding beats", unit="video", leave=False, disable=len(source) < 50):
    record = source[i]
    starts, src = beat_clip_starts(record, frames, period)
    sources[src] = sources.get(src, 0) + 1
    for c, s in enumerate(starts or clip_starts(_num_frames(record), frames, period, stride)):
      rows.append((i, c, s, 1))
  return np.asarray(rows, np.int64).reshape(-1, 4), sources


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
