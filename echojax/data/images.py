"""Still-image IO shared by builders and prediction: any common format -> uint8 RGB, with named errors.

``read_image`` applies the EXIF orientation (phone photos store the sensor's rotation there), converts grey,
palette, 16-bit and multi-frame files to RGB, and either drops an alpha channel (the default, as before) or
composites it onto a given background (``background=(255, 255, 255)``: paper). ``image_size`` reads only the header.
``resize_image`` is a plain resize; ``letterbox_image`` keeps the aspect ratio and pads to a square.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
_EXIF_ORIENTATION = 0x0112  # values 5-8 swap width and height
_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageReadError(Exception):
  """An image file could not be read; the message says why."""


def _check_file(path: Path) -> None:
  if not path.exists():
    raise ImageReadError("file not found")
  if path.is_file() and path.stat().st_size == 0:
    raise ImageReadError("empty file (0 bytes)")


def _has_alpha(im: Image.Image) -> bool:
  return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info)


def read_image(path: str | Path, *, background: tuple[int, int, int] | None = None) -> np.ndarray:
  """Read an image as uint8 RGB (H, W, 3), EXIF orientation applied. Grey, palette, RGBA, 16-bit and multi-frame
  (first frame) are converted; 16-bit grey is stretched from its min to its max. With ``background`` an alpha
  channel (or a palette's transparent colour) is composited onto that colour; without it the alpha is dropped."""
  path = Path(path)
  _check_file(path)
  try:
    with Image.open(path) as im:
      im.seek(0)
      im = ImageOps.exif_transpose(im)
      if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / max(hi - lo, 1e-9) * 255.0).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
      if background is not None and _has_alpha(im):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return np.asarray(Image.alpha_composite(canvas, rgba).convert("RGB"), dtype=np.uint8).copy()
      return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
  except _ERRORS as e:
    raise ImageReadError(f"not a readable image ({type(e).__name__}: {e})") from None


def image_size(path: str | Path) -> tuple[int, int]:
  """(height, width) as ``read_image`` would return it (EXIF orientation applied), from the header only."""
  path = Path(path)
  _check_file(path)
  try:
    with Image.open(path) as im:
      w, h = im.size
      if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        w, h = h, w
      return h, w
  except _ERRORS as e:
    raise ImageReadError(f"not a readable image ({type(e).__name__}: {e})") from None


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Resize (H, W, 3) uint8 to (size, size) (or (h, w)) with area interpolation (plain resize, no letterbox)."""
  h, w = (size, size) if isinstance(size, int) else size
  if img.shape[:2] == (h, w):
    return img
  interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
  return cv2.resize(img, (w, h), interpolation=interp)


def letterbox_image(img: np.ndarray, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
  """(H, W, 3) uint8 -> (size, size, 3): the longer side scaled to ``size`` (aspect ratio kept), then the shorter
  one padded with ``fill`` on both sides, centred (for an odd remainder the extra pixel goes to the bottom/right)."""
  h, w = img.shape[:2]
  scale = size / max(h, w)
  nh, nw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
  small = resize_image(img, (nh, nw))
  out = np.empty((size, size, 3), np.uint8)
  out[:] = np.asarray(fill, np.uint8)
  top, left = (size - nh) // 2, (size - nw) // 2
  out[top:top + nh, left:left + nw] = small
  return out
