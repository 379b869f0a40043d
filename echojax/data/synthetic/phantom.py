"""Shared geometry and drawing helpers for echo phantoms (sector masks, speckle, polygons, transforms).

Phantom generators draw whole videos quickly by working on point lists (contours are polygons transformed by a
2x3 affine matrix and filled with OpenCV) and on whole-video numpy arrays (speckle for all frames at once), never
per-pixel Python loops. Every function takes an explicit ``np.random.Generator`` so output is deterministic
for a seed.
"""

from __future__ import annotations

import cv2
import numpy as np

# Fixed-point shift used for sub-pixel polygon filling with OpenCV (coordinates scaled by 2**SHIFT).
SHIFT = 4


def sector_geometry(size: int, apex: tuple[float, float], radius: float, half_angle: float,
                    tilt: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Polar coordinates of a (size, size) image around the transducer ``apex`` -> (mask bool, r px, angle rad).

  The sector (cone) opens downwards; ``half_angle`` in radians, ``tilt`` rotates the cone (radians, positive =
  towards +x). The mask softly excludes the first few pixels at the apex like a real near-field dropout.
  """
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  dx, dy = xx - apex[0], yy - apex[1]
  r = np.hypot(dx, dy)
  ang = np.arctan2(dx, dy) - tilt
  mask = (r <= radius) & (np.abs(ang) <= half_angle) & (dy >= 0)
  return mask, r, ang


def attenuation(r: np.ndarray, radius: float, strength: float) -> np.ndarray:
  """Depth attenuation with a time-gain-compensation bump: brightness factor per pixel from its depth ``r``."""
  d = np.clip(r / max(radius, 1.0), 0.0, 1.5)
  return (1.0 - strength * d ** 1.5 + 0.15 * np.exp(-((d - 0.35) / 0.2) ** 2)).astype(np.float32)


def speckle(rng: np.random.Generator, shape: tuple[int, ...], grain: float = 0.8) -> np.ndarray:
  """Multiplicative speckle (mean ~1) for ``shape`` = (..., H, W): Rayleigh-like noise smoothed by ``grain`` px.

  Smoothing happens on the last two axes only, one OpenCV call per 2-D slice (fast for a few hundred frames).
  """
  noise = rng.rayleigh(1.0, size=shape).astype(np.float32)
  flat = noise.reshape(-1, shape[-2], shape[-1])
  if grain > 0:
    for i in range(flat.shape[0]):
      cv2.GaussianBlur(flat[i], (0, 0), grain, dst=flat[i])
  flat /= np.float32(np.sqrt(np.pi / 2))  # Rayleigh mean -> 1
  return flat.reshape(shape)


def affine(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
  """2x3 matrix: rotate by ``angle`` (radians, about the origin), scale, then translate by (tx, ty)."""
  c, s = np.cos(angle) * scale, np.sin(angle) * scale
  return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def transform(points: np.ndarray, m: np.ndarray) -> np.ndarray:
  """Apply a 2x3 affine matrix to points (..., 2)."""
  pts = np.asarray(points, dtype=np.float64)
  return pts @ m[:, :2].T + m[:, 2]


def ellipse_points(cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
  """Polygon (n, 2) approximating an ellipse with semi-axes (ax, ay) rotated by ``angle`` radians."""
  t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
  x, y = ax * np.cos(t), ay * np.sin(t)
  c, s = np.cos(angle), np.sin(angle)
  return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=-1)


def fill(img: np.ndarray, polys: list[np.ndarray] | np.ndarray, value: float) -> None:
  """Fill one or more float polygons (n, 2) into ``img`` in place with sub-pixel precision (anti-aliased later)."""
  if isinstance(polys, np.ndarray):
    polys = [polys]
  pts = [np.round(np.asarray(p) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2) for p in polys]
  cv2.fillPoly(img, pts, float(value), lineType=cv2.LINE_8, shift=SHIFT)


def polyline(img: np.ndarray, points: np.ndarray, value: float, thickness: int = 1) -> None:
  """Draw an open polyline (n, 2) into ``img`` in place."""
  pts = np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)
  cv2.polylines(img, [pts], False, float(value), thickness=thickness, lineType=cv2.LINE_AA, shift=SHIFT)


def to_uint8(frames: np.ndarray) -> np.ndarray:
  """Float frames in [0, 1] -> uint8 [0, 255] (clipped)."""
  return np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8)
