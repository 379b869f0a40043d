"""Video file IO used by generators, builders and ingestion (OpenCV; AVI/MJPG, MP4, GIF frames)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from echojax.errors import UserError


class VideoReadError(Exception):
  """A video file could not be read; the message says why (missing, not a video, no frames)."""


def _open(path: Path) -> "cv2.VideoCapture":
  """An opened capture, or VideoReadError saying why not (missing, empty, not a video)."""
  if not path.exists():
    raise VideoReadError("file not found")
  if path.stat().st_size == 0:
    raise VideoReadError("file is empty")
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    cap.release()
    raise VideoReadError("not a readable video (OpenCV could not open it)")
  return cap


def probe_video(path: str | Path) -> None:
  """Cheap check that a video exists and yields a first frame (raises VideoReadError with the reason)."""
  cap = _open(Path(path))
  try:
    ok, _ = cap.read()
  finally:
    cap.release()
  if not ok:
    raise VideoReadError("no decodable frames (corrupt or truncated file)")


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
  """Decode a whole video file -> (frames uint8 (T, H, W, 3) RGB, header fps). Raises VideoReadError."""
  cap = _open(Path(path))
  try:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    frames = []
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
  finally:
    cap.release()
  if not frames:
    raise VideoReadError("no decodable frames (corrupt or truncated file)")
  return np.stack(frames), fps


def write_avi(path: str | Path, frames: np.ndarray, fps: float) -> None:
  """Write frames (T, H, W) grey or (T, H, W, 3) RGB uint8 as an MJPG AVI, as EchoNet-Dynamic's Videos/*.avi."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise UserError(f"write_avi({path}): frames must be uint8, got {frames.dtype}")
  if frames.ndim == 3:
    frames = np.repeat(frames[..., None], 3, axis=-1)
  t, h, w, c = frames.shape
  if c != 3:
    raise UserError(f"write_avi({path}): expected 3 channels, got {c}")
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (w, h), True)
  if not writer.isOpened():
    raise OSError(f"OpenCV could not open {path} for writing")
  try:
    for f in frames:
      writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
  finally:
    writer.release()


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Resize (T, H, W, C) uint8 frames to (size, size) (or (h, w)) with area interpolation."""
  h, w = (size, size) if isinstance(size, int) else size
  if frames.shape[1:3] == (h, w):
    return frames
  out = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
  return out.reshape(len(frames), h, w, -1)
