"""Still-image IO shared by builders and prediction: any common format -> uint8 RGB, with named errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


class ImageReadError(Exception):
  """An image file could not be read; the message says why."""


def read_image(path: str | Path) -> np.ndarray:
  """Read an image as uint8 RGB (H, W, 3). Grey, palette, RGBA, 16-bit and multi-frame (first frame) are converted."""
  path = Path(path)
  if not path.exists():
    raise ImageReadError("file not found")
  try:
    with Image.open(path) as im:
      im.seek(0)
      if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / max(hi - lo, 1e-9) * 255.0).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
      return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise ImageReadError(f"not a readable image ({type(e).__name__}: {e})") from None


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Resize (H, W, 3) uint8 to (size, size) (or (h, w)) with area interpolation (plain resize, no letterbox)."""
  h, w = (size, size) if isinstance(size, int) else size
  if img.shape[:2] == (h, w):
    return img
  interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
  return cv2.resize(img, (w, h), interpolation=interp)
