"""Video file IO used by generators, builders and ingestion (OpenCV; AVI/MJPG, MP4, GIF frames)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from echojax.errors import UserError


class VideoReadError(Exception):
  """A video file could not be read; the message says why (missing, not a video, no frames)."""


# Still-image signatures: OpenCV opens these as a 1-frame "video", so they are refused by name.
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"),
                (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def sniff(path: str | Path) -> str:
  """What a file's first bytes say it is: "avi", "image:<FORMAT>" (a still image) or "other"."""
  with open(path, "rb") as f:
    head = f.read(16)
  if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
    return "avi"
  if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
    return "image:WebP"
  for magic, kind in _IMAGE_MAGIC:
    if head.startswith(magic):
      return f"image:{kind}"
  return "other"


def _open(path: Path) -> "cv2.VideoCapture":
  """An opened capture, or VideoReadError saying why not (missing, empty, a still image, not a video)."""
  if not path.exists():
    raise VideoReadError("file not found")
  if path.is_dir():
    raise VideoReadError("is a folder, not a video file")
  if path.stat().st_size == 0:
    raise VideoReadError("file is empty")
  kind = sniff(path)
  if kind.startswith("image:"):
    raise VideoReadError(f"not a video: the file is a {kind[6:]} image (renamed {path.suffix}?)")
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
  """Decode a whole video file -> (frames uint8 (T, H, W, 3) RGB, header fps). Raises VideoReadError, also when an
  AVI decodes fewer frames than its header reports (a truncated file). Other containers are not checked: their
  frame count may be an estimate from duration x rate (variable-rate MP4s), which would refuse good files."""
  path = Path(path)
  cap = _open(path)
  try:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    reported = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
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
  if np.isfinite(reported) and 0 < reported < 1e7 and sniff(path) == "avi":
    reported = int(round(reported))
    if len(frames) < reported:
      raise VideoReadError(f"truncated or corrupt: decoded {len(frames)} of the {reported} frames its header "
                           f"reports")
  return np.stack(frames), fps


def write_avi(path: str | Path, frames: np.ndarray, fps: float, codec: str = "MJPG") -> None:
  """Write frames (T, H, W) grey or (T, H, W, 3) RGB uint8 as an AVI: MJPG (lossy) as EchoNet-Dynamic's
  Videos/*.avi, or ``codec="FFV1"`` (lossless, what ingest writes, so frames read back exactly)."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise UserError(f"write_avi({path}): frames must be uint8, got {frames.dtype}")
  if frames.ndim == 3:
    frames = np.repeat(frames[..., None], 3, axis=-1)
  t, h, w, c = frames.shape
  if c != 3:
    raise UserError(f"write_avi({path}): expected 3 channels, got {c}")
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h), True)
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
