"""Find the ultrasound sector (the scan cone) of a cine, and crop to it instead of cutting a centre square.

Non-square exports (e.g. 636 x 422) put the cone off-centre beside burned-in text, markers and an ECG trace; a centre
crop cut the cone's sides off. :func:`find_sector` finds the cone from the cine itself:

1. motion: pixels whose intensity changes over time (max - min over frames above a threshold: the moving heart and
   the speckle; static text and markers do not change). A sweeping ECG trace does change, so only the largest
   connected region is kept, holes are closed with morphology and the region's convex hull (OpenCV) is the cone.
   ``motion="flow"`` measures motion as the LVAD study did instead: dense optical flow (OpenCV's Farneback)
   between consecutive grey frames, its magnitude averaged over the cine (:func:`flow_magnitude`), pixels above
   ``FlowParams.threshold`` times the map's 99th percentile (and above ``min_flow`` px/frame) count as moving, if
   their intensity changes at all (the flow's window spreads motion past the cone's edge); then as in 1.
2. for a single frame or no motion: the same on an intensity threshold (non-black pixels), largest component.
3. if neither gives a sensible region (too small), the centred square, with a note saying so.

:func:`crop_to_sector` masks everything outside the hull to black, crops to the hull's bounding box padded to a
square with black (the aspect ratio is kept, nothing of the cone is cut) and resizes to ``size``.
:func:`preview` writes a PNG (middle frame, motion map, hull outline, cropped result side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

MOTION_THRESHOLD = 12  # grey levels of max-min over time counted as "changes"
INTENSITY_THRESHOLD = 20  # grey level counted as "not background" for the single-frame fallback
MIN_AREA_FRACTION = 0.02  # a region smaller than this fraction of the frame is not a sector
PREVIEW_SIZE = (1200, 320)  # preview PNG width x height in pixels
MOTIONS = ("range", "flow")


@dataclass(frozen=True)
class FlowParams:
  """Optical-flow motion (``find_sector(..., motion="flow")``): Farneback's parameters (OpenCV's names and
  defaults of its tutorial), the side the frames are reduced to for the flow (the map is resized back and in full-
  resolution pixels per frame), at most ``max_pairs`` consecutive frame pairs spread over the cine, and the
  threshold: a pixel moves when its mean magnitude exceeds ``threshold`` x the map's 99th percentile and
  ``min_flow`` px/frame (a still cine has no moving pixels, not its noise)."""
  pyr_scale: float = 0.5
  levels: int = 3
  winsize: int = 15
  iterations: int = 3
  poly_n: int = 5
  poly_sigma: float = 1.2
  side: int = 256
  max_pairs: int = 32
  threshold: float = 0.2
  min_flow: float = 0.05


@dataclass
class Sector:
  box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame pixels
  mask: np.ndarray  # bool (H, W): inside the cone's convex hull
  method: str  # "motion" (max - min), "flow" (optical flow), "intensity" or "center"
  hull: np.ndarray | None = None  # (N, 2) int hull points (x, y), None for the centre fallback
  motion: np.ndarray | None = field(default=None, repr=False)  # (H, W) map used: uint8 max-min, float32 px/frame
  note: str | None = None  # set when the fallback was used


def _grey(frames: np.ndarray) -> np.ndarray:
  """(T,H,W[,C]) uint8 -> (T,H,W) uint8 (channel max, so coloured Doppler counts as signal)."""
  frames = np.asarray(frames)
  if frames.ndim == 4:
    return frames.max(axis=-1)
  return frames


def _region(binary: np.ndarray) -> np.ndarray | None:
  """Largest connected component of ``binary``, holes closed, -> its convex hull points (N, 2), or None."""
  h, w = binary.shape
  k = max(3, (min(h, w) // 60) | 1)
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
  b = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_OPEN, kernel)  # drop speckle-sized specks / thin lines
  b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3 * k, 3 * k)))
  n, labels, stats, _ = cv2.connectedComponentsWithStats(b, connectivity=8)
  if n <= 1:
    return None
  best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
  if stats[best, cv2.CC_STAT_AREA] < MIN_AREA_FRACTION * h * w:
    return None
  region = cv2.dilate((labels == best).astype(np.uint8), kernel)  # give back the faint edge of the cone
  pts = cv2.findNonZero(region)
  return cv2.convexHull(pts).reshape(-1, 2)


def _from_hull(hull: np.ndarray, shape: tuple[int, int], method: str, motion: np.ndarray) -> Sector:
  mask = np.zeros(shape, np.uint8)
  cv2.fillConvexPoly(mask, hull.astype(np.int32), 1)
  x, y, w, h = cv2.boundingRect(hull.astype(np.int32))
  return Sector((x, y, x + w, y + h), mask.astype(bool), method, hull, motion)


def center_sector(shape: tuple[int, int], note: str | None = None) -> Sector:
  """The centred largest square (the old ``--crop center``) as a Sector."""
  h, w = shape
  s = min(h, w)
  y0, x0 = (h - s) // 2, (w - s) // 2
  mask = np.zeros((h, w), bool)
  mask[y0:y0 + s, x0:x0 + s] = True
  return Sector((x0, y0, x0 + s, y0 + s), mask, "center", None, None, note)


def flow_magnitude(grey: np.ndarray, params: FlowParams = FlowParams()) -> np.ndarray:
  """Mean dense optical-flow magnitude (float32 (H, W), pixels per frame) of a grey cine (T, H, W) uint8, T >= 2:
  Farneback flow between consecutive frames (at most ``params.max_pairs`` pairs, evenly spread), computed with the
  longer side reduced to ``params.side`` and resized back."""
  grey = np.asarray(grey)
  t, h, w = grey.shape
  if t < 2:
    raise ValueError("optical flow needs at least two frames")
  f = min(1.0, params.side / max(h, w))
  size = (max(1, round(w * f)), max(1, round(h * f)))
  starts = np.unique(np.linspace(0, t - 2, min(t - 1, params.max_pairs)).round().astype(int))
  acc = np.zeros((size[1], size[0]), np.float32)
  for i in starts:
    a, b = (cv2.resize(grey[j], size, interpolation=cv2.INTER_AREA) if f < 1 else grey[j] for j in (i, i + 1))
    flow = cv2.calcOpticalFlowFarneback(a, b, None, params.pyr_scale, params.levels, params.winsize,
                                        params.iterations, params.poly_n, params.poly_sigma, 0)
    acc += np.hypot(flow[..., 0], flow[..., 1])
  acc /= len(starts)
  return (cv2.resize(acc, (w, h), interpolation=cv2.INTER_LINEAR) / f).astype(np.float32)


def find_sector(frames: np.ndarray, motion: str = "range", flow: FlowParams | None = None) -> Sector:
  """The scan cone of a cine (T,H,W[,C]) uint8 (or one frame (H,W,C)): see the module docstring. ``motion``:
  ``"range"`` (max - min over time) or ``"flow"`` (mean optical-flow magnitude, ``flow`` its parameters)."""
  if motion not in MOTIONS:
    raise ValueError(f"motion must be one of {MOTIONS}; got {motion!r}")
  frames = np.asarray(frames)
  if frames.ndim == 3 and frames.shape[-1] in (1, 3, 4):  # one (H, W, C) frame
    frames = frames[None]
  g = _grey(frames)
  shape = g.shape[1:]
  changes = (g.max(axis=0).astype(np.int16) - g.min(axis=0)).astype(np.uint8)
  mmap, moving, method = changes, changes > MOTION_THRESHOLD, "motion"
  if motion == "flow" and len(g) > 1:
    p = flow or FlowParams()
    mmap = flow_magnitude(g, p)
    # Farneback's window spreads motion some 20 px past the cone's edge and over the band of a sweeping ECG; a
    # pixel whose intensity never changes has not moved, so only changing pixels can count as moving
    moving &= mmap > max(p.min_flow, p.threshold * float(np.percentile(mmap, 99)))
    method = "flow"
  if len(g) > 1:
    hull = _region(moving)
    if hull is not None:
      return _from_hull(hull, shape, method, mmap)
  mid = g[len(g) // 2]
  hull = _region(mid > INTENSITY_THRESHOLD)
  if hull is not None:
    sec = _from_hull(hull, shape, "intensity", mmap)
    sec.note = ("single frame: sector found by intensity" if len(g) == 1 else
                "no motion found: sector found by intensity")
    return sec
  return center_sector(shape, "no sector found (no motion, no bright region): centre-cropped to a square")


def crop_to_sector(frames: np.ndarray, sector: Sector, size: int) -> np.ndarray:
  """Black outside the hull, crop to the box padded to a square with black, resize to ``size`` (area filter)."""
  frames = np.asarray(frames)
  t, h, w = frames.shape[:3]
  x0, y0, x1, y1 = sector.box
  masked = frames * sector.mask[None, :, :, None].astype(frames.dtype) if frames.ndim == 4 else \
      frames * sector.mask[None].astype(frames.dtype)
  crop = masked[:, y0:y1, x0:x1]
  ch, cw = crop.shape[1:3]
  s = max(ch, cw)
  out = np.zeros((t, s, s) + frames.shape[3:], frames.dtype)
  oy, ox = (s - ch) // 2, (s - cw) // 2
  out[:, oy:oy + ch, ox:ox + cw] = crop
  if s == size:
    return out
  interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
  res = [cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interp) for f in out]
  return np.stack(res).reshape((t, size, size) + frames.shape[3:])


def preview(frames: np.ndarray, sector: Sector, path: str | Path, size: int = 112,
            cropped: np.ndarray | None = None) -> Path:
  """PNG (``PREVIEW_SIZE`` pixels): middle frame, motion map, hull outline on the frame, cropped result (the middle
  frame of ``cropped`` when given, e.g. what another crop mode stored, else ``crop_to_sector`` of it)."""
  from echojax.plots import DEFAULT_DPI, _figure, _save

  frames = np.asarray(frames)
  if frames.ndim == 3 and frames.shape[-1] in (1, 3, 4):
    frames = frames[None]
  mid = frames[len(frames) // 2]
  motion = sector.motion if sector.motion is not None else np.zeros(mid.shape[:2], np.uint8)
  outline = np.ascontiguousarray(mid.copy() if mid.ndim == 3 else np.repeat(mid[..., None], 3, -1))
  x0, y0, x1, y1 = sector.box
  lw = max(1, min(outline.shape[:2]) // 150)
  if sector.hull is not None:
    cv2.polylines(outline, [sector.hull.astype(np.int32).reshape(-1, 1, 2)], True, (0, 255, 0), lw)
  cv2.rectangle(outline, (x0, y0), (x1 - 1, y1 - 1), (255, 200, 0), lw)
  if cropped is not None:
    cropped = np.asarray(cropped)[len(cropped) // 2]
    size = cropped.shape[0]
  else:
    cropped = crop_to_sector(mid[None], sector, size)[0]
  w, h = PREVIEW_SIZE
  fig = _figure((w / DEFAULT_DPI, h / DEFAULT_DPI), DEFAULT_DPI)
  axes = fig.subplots(1, 4)
  moved = "mean optical flow (px/frame)" if sector.method == "flow" else "motion (max - min)"
  panels = [(mid, "middle frame", None), (motion, moved, "magma"),
            (outline, f"sector ({sector.method})", None), (cropped, f"cropped {size}x{size}", None)]
  for ax, (img, title, cmap) in zip(axes, panels):
    ax.imshow(img, cmap=cmap or ("gray" if img.ndim == 2 else None))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
  if sector.note:
    fig.suptitle(sector.note, fontsize=8)
  return _save(fig, path)
