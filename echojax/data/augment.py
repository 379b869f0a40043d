"""Host-side augmentation for clips and images (numpy + OpenCV), deterministic per sample.

The pipeline draws one set of parameters per sample from the per-record ``np.random.Generator`` that grain
derives from the loader seed and the record's position, so a given (seed, step) always sees the same transform,
and applies the SAME transform to every frame of a clip (a clip is one moving heart, not T unrelated images).

Options (all off when absent or 0), in the ``augment`` dict of the data config:

- ``pad`` (int, pixels): EchoNet-Dynamic style zero padding followed by a random crop back to the original size,
  i.e. an integer translation of up to ``pad`` pixels per axis with black fill.
- ``rotation`` (float, degrees): uniform rotation in [-rotation, rotation] about the image centre.
- ``shift`` (float, fraction of the side): uniform translation in [-shift, shift] * side per axis.
- ``zoom`` (float, fraction): uniform scale in [1 - zoom, 1 + zoom].
- ``brightness`` (float, fraction of 255): additive intensity offset in [-b, b] * 255.
- ``contrast`` (float, fraction): multiplicative intensity gain in [1 - c, 1 + c] about the clip mean.
- ``flip`` (bool): random left-right flip. Off by default: it swaps the apparent anatomy in apical views.
- ``fill`` (0-255, default 0): the grey level of pixels a shift/rotation/zoom brings in from outside the image
  (black for echo; 255 for ECG printouts on white paper).

Geometric parts are fused into one affine warp per frame (one interpolation, not three). Intensity parts act on
the float clip before normalisation, in [0, 255] units, and are clipped back to [0, 255].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import cv2
import numpy as np

from echojax.errors import UserError

KNOWN_OPTIONS = ("pad", "rotation", "shift", "zoom", "brightness", "contrast", "flip", "fill")


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """One sample's draw. ``dx``/``dy`` in pixels, ``angle`` in degrees, ``scale`` unitless."""

  dx: float = 0.0
  dy: float = 0.0
  angle: float = 0.0
  scale: float = 1.0
  flip: bool = False
  brightness: float = 0.0  # additive, [0, 255] units
  contrast: float = 1.0  # multiplicative gain about the clip mean
  fill: float = 0.0  # grey level brought in at the borders by geometric transforms

  @property
  def is_geometric_identity(self) -> bool:
    return self.dx == 0 and self.dy == 0 and self.angle == 0 and self.scale == 1.0 and not self.flip

  @property
  def is_integer_shift(self) -> bool:
    return self.angle == 0 and self.scale == 1.0 and float(self.dx).is_integer() and float(self.dy).is_integer()


def check_options(options: Mapping[str, Any] | None, where: str = "data.augment") -> dict:
  """Validate an augment dict: unknown keys and negative magnitudes are user mistakes."""
  options = dict(options or {})
  unknown = sorted(set(options) - set(KNOWN_OPTIONS))
  if unknown:
    raise UserError(f"unknown augmentation option(s) {unknown} in config field {where}; "
                    f"known options: {', '.join(KNOWN_OPTIONS)}")
  for k, v in options.items():
    if k != "flip" and float(v) < 0:
      raise UserError(f"config field {where}.{k} must be >= 0, got {v}")
  if float(options.get("fill", 0) or 0) > 255:
    raise UserError(f"config field {where}.fill is a grey level in 0-255, got {options['fill']}")
  return options


def sample_params(rng: np.random.Generator, options: Mapping[str, Any], height: int, width: int) -> AugmentParams:
  """Draw one sample's parameters. Always consumes the same number of draws so streams stay aligned."""
  u = rng.uniform(-1.0, 1.0, size=7)
  pad = int(options.get("pad", 0) or 0)
  dx = dy = 0.0
  if pad:
    # integers in [-pad, pad], as a pad-by-`pad` then random crop would give
    dx = float(np.clip(np.floor((u[0] + 1) / 2 * (2 * pad + 1)), 0, 2 * pad) - pad)
    dy = float(np.clip(np.floor((u[1] + 1) / 2 * (2 * pad + 1)), 0, 2 * pad) - pad)
  shift = float(options.get("shift", 0) or 0)
  if shift:
    dx += u[2] * shift * width
    dy += u[3] * shift * height
  angle = float(u[4] * float(options.get("rotation", 0) or 0))
  scale = float(1.0 + u[5] * float(options.get("zoom", 0) or 0))
  extra = rng.uniform(-1.0, 1.0, size=2)
  brightness = float(extra[0] * float(options.get("brightness", 0) or 0) * 255.0)
  contrast = float(1.0 + extra[1] * float(options.get("contrast", 0) or 0))
  flip = bool(options.get("flip", False)) and bool(u[6] > 0)
  return AugmentParams(dx=dx, dy=dy, angle=angle, scale=scale, flip=flip, brightness=brightness, contrast=contrast,
                       fill=float(options.get("fill", 0) or 0))


def affine_matrix(params: AugmentParams, height: int, width: int) -> np.ndarray:
  """2x3 matrix mapping input pixels to output pixels: rotate/zoom about the centre, then translate."""
  centre = ((width - 1) / 2.0, (height - 1) / 2.0)
  m = cv2.getRotationMatrix2D(centre, params.angle, params.scale)
  m[0, 2] += params.dx
  m[1, 2] += params.dy
  return m


def _integer_shift(frames: np.ndarray, dx: int, dy: int, fill: float = 0.0) -> np.ndarray:
  """Exact translation with ``fill`` (0: what pad + crop does), on (T, H, W, C) arrays of any dtype."""
  out = np.full_like(frames, fill)
  _, h, w = frames.shape[:3]
  ys, yd = (0, dy) if dy >= 0 else (-dy, 0)
  xs, xd = (0, dx) if dx >= 0 else (-dx, 0)
  hh, ww = h - abs(dy), w - abs(dx)
  if hh > 0 and ww > 0:
    out[:, yd:yd + hh, xd:xd + ww] = frames[:, ys:ys + hh, xs:xs + ww]
  return out


def apply_geometric(frames: np.ndarray, params: AugmentParams) -> np.ndarray:
  """Apply the geometric part of ``params`` to every frame of (T, H, W, C) ``frames`` (any dtype cv2 handles)."""
  if params.flip:
    frames = frames[:, :, ::-1]
  if params.is_geometric_identity or (params.flip and params.dx == 0 and params.dy == 0 and params.angle == 0
                                      and params.scale == 1.0):
    return np.ascontiguousarray(frames)
  if params.is_integer_shift:
    return _integer_shift(frames, int(params.dx), int(params.dy), params.fill)
  t, h, w, c = frames.shape
  m = affine_matrix(params, h, w)
  out = np.empty_like(frames)
  for i in range(t):
    warped = cv2.warpAffine(np.ascontiguousarray(frames[i]), m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(params.fill,) * 4)
    out[i] = warped.reshape(h, w, c)
  return out


def apply_intensity(clip: np.ndarray, params: AugmentParams) -> np.ndarray:
  """Brightness/contrast on a float32 clip in [0, 255] units (in place when possible); clipped to [0, 255]."""
  if params.contrast == 1.0 and params.brightness == 0.0:
    return clip
  if params.contrast != 1.0:
    mean = float(clip.mean())
    clip -= mean
    clip *= params.contrast
    clip += mean
  if params.brightness:
    clip += params.brightness
  np.clip(clip, 0.0, 255.0, out=clip)
  return clip
