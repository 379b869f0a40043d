"""Echo view phantoms: still frames and short cines of 11 views, each cine with a synchronised synthetic ECG.

    python -m echojax.data.synthetic echo_views --out DIR [--num-per-class N] [--seed S] [--size 112]

Writes the raw layout read by ``tfds_builders/echo_views`` (see its docstring):

    DIR/images/<VIEW>/<VIEW>_<i>.png|jpg               single frames
    DIR/videos/<VIEW>/<VIEW>_<i>.avi|mp4               cines, 112x112, 32-48 frames at 20-30 fps
    DIR/videos/<VIEW>/<VIEW>_<i>.csv                   ECG: header ``time_s,ecg_mv``, one row per sample
    DIR/videos/<VIEW>/<VIEW>_<i>.hea + .dat            ... or WFDB (every third cine, lead "II")
    DIR/ground_truth.csv                               phantom-only truth (ignored by the builder): per cine
                                                       fps, heart rate, R-peak times and ED frame indices

Views (the set echo view classifiers use): A2C, A3C, A4C, A5C (apical 2/3/4/5-chamber), PLAX (parasternal long
axis), PSAX (parasternal short axis, mid-papillary), SUBCOSTAL (four-chamber, through the liver), SUPRASTERNAL
(aortic arch), and the non-B-mode displays CW_DOPPLER (continuous-wave aortic outflow: filled systolic envelope
below the baseline), PW_DOPPLER (pulsed-wave mitral inflow: hollow E and A waves above the baseline) and M_MODE
(a depth-time strip through the LV, under a small 2D scout image).

Every cine has its own heart rate (60-130 bpm), fps, gain, depth (zoom), rotation and shift. Chambers follow a
contraction curve that is 0 at each R peak (ED, largest cavities, darkest frame) and 1 at R + Bazett QT (ES), so
the ECG's R peaks fall on the ED frames; Doppler and M-mode strips scroll in time with the same cycle.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from echojax.data.ecg import DEFAULT_QTC_S, write_ecg_csv
from echojax.data.synthetic.ecg import synthesize_ecg
from echojax.data.labels import ECHO_VIEWS
from echojax.data.video import write_avi
from echojax.errors import UserError

VIEWS = ECHO_VIEWS
STRIP_VIEWS = ("CW_DOPPLER", "PW_DOPPLER", "M_MODE")
CANVAS = 112  # views are drawn on a 112x112 canvas and resized to --size
SWEEP_S = 2.5  # time shown across a Doppler / M-mode strip

# chambers per view: (cx, cy, ax, ay, angle_deg) of each cavity on the 112 canvas, apex (probe) at the top
_CHAMBERS = {
    "A2C": [(56, 46, 15, 27, 0), (56, 88, 13, 11, 0)],
    "A3C": [(54, 46, 14, 27, 5), (52, 89, 12, 10, 0)],
    "A4C": [(68, 46, 12, 26, 8), (42, 49, 10, 23, -8), (67, 88, 11, 10, 0), (43, 89, 10, 10, 0)],
    "A5C": [(68, 44, 12, 25, 8), (41, 47, 10, 22, -8), (67, 90, 11, 9, 0), (42, 91, 10, 9, 0)],
    "PLAX": [(50, 62, 32, 11, -8), (86, 80, 12, 11, 0), (56, 30, 34, 6, -5)],
    "PSAX": [(58, 62, 17, 17, 0)],
    "SUBCOSTAL": [(64, 70, 12, 18, 50), (44, 58, 10, 16, 50), (80, 90, 9, 8, 50), (60, 95, 8, 8, 50)],
}
# which cavities contract like ventricles (the others, atria/vessels, move in counter-phase, less)
_VENTRICLES = {"A2C": [0], "A3C": [0], "A4C": [0, 1], "A5C": [0, 1], "PLAX": [0, 2], "PSAX": [0],
               "SUBCOSTAL": [0, 1]}


def contraction(t: np.ndarray | float, hr_bpm: float, first_r_s: float, qtc_s: float = DEFAULT_QTC_S):
  """Contraction in [0, 1]: 0 at each R peak (ED), 1 at R + Bazett QT (ES), relaxing back by the next R."""
  rr = 60.0 / hr_bpm
  sys = min(qtc_s * math.sqrt(rr), 0.8 * rr)
  p = np.mod(np.asarray(t, np.float64) - first_r_s, rr)
  up = np.sin(0.5 * np.pi * np.clip(p / sys, 0, 1)) ** 2
  down = np.cos(0.5 * np.pi * np.clip((p - sys) / (0.6 * (rr - sys)), 0, 1)) ** 2  # fast filling, then diastasis
  return np.where(p < sys, up, down)


def _sector_mask(size: int, half_angle_deg: float = 38.0) -> np.ndarray:
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  apex = (size / 2, 2.0)
  r = np.hypot(xx - apex[0], yy - apex[1])
  ang = np.degrees(np.arctan2(xx - apex[0], yy - apex[1]))
  return ((r < size * 0.97) & (np.abs(ang) < half_angle_deg)).astype(np.float32)


def _ellipse(img: np.ndarray, c: tuple, value: float, grow: float = 0.0) -> None:
  cx, cy, ax, ay, ang = c
  cv2.ellipse(img, (int(round(cx * 16)), int(round(cy * 16))),
              (max(1, int(round((ax + grow) * 16))), max(1, int(round((ay + grow) * 16)))), ang, 0, 360,
              float(value), -1, cv2.LINE_AA, 4)


def _bmode_frame(view: str, c: float, p: dict) -> np.ndarray:
  """One B-mode frame (float 0-1 before speckle) of ``view`` at contraction ``c``."""
  img = np.full((CANVAS, CANVAS), 0.32, np.float32)
  if view == "SUBCOSTAL":  # liver: a bright, textured band near the probe
    cv2.ellipse(img, (40 * 16, 10 * 16), (70 * 16, 34 * 16), 15, 0, 360, 0.5, -1, cv2.LINE_AA, 4)
  if view == "SUPRASTERNAL":
    # aortic arch (thick dark arc with a bright wall), three head-and-neck branches, pulmonary artery below
    arch_r = 30 - 2 * c
    cv2.ellipse(img, (56 * 16, 62 * 16), (int((arch_r + 9) * 16), int((arch_r + 5) * 16)), 0, 180, 360, 0.75, 9,
                cv2.LINE_AA, 4)
    cv2.ellipse(img, (56 * 16, 62 * 16), (int((arch_r + 9) * 16), int((arch_r + 5) * 16)), 0, 180, 360, 0.05, 6,
                cv2.LINE_AA, 4)
    for x in (40, 54, 68):
      cv2.line(img, (x, 38), (x - 2, 12), 0.05, 3, cv2.LINE_AA)
    _ellipse(img, (56, 80, 9 - 1.5 * c, 9 - 1.5 * c, 0), 0.75, grow=2)
    _ellipse(img, (56, 80, 9 - 1.5 * c, 9 - 1.5 * c, 0), 0.05)
    return img
  chambers = _CHAMBERS[view]
  vent = _VENTRICLES[view]
  scaled = []
  for i, (cx, cy, ax, ay, ang) in enumerate(chambers):
    k = 1 - 0.28 * c if i in vent else 1 + 0.12 * c  # ventricles shrink in systole, atria fill
    scaled.append((cx, cy, ax * k, ay * (1 - 0.18 * c if i in vent else 1 + 0.08 * c), ang))
  wall = 4.5 + 2.5 * c  # myocardium thickens in systole
  for ch in scaled:
    _ellipse(img, ch, 0.78, grow=wall)
  if view == "PSAX":  # RV crescent wrapping the LV
    cv2.ellipse(img, (58 * 16, 62 * 16), (34 * 16, 30 * 16), 0, 200, 330, 0.05, int(7 - 2 * c), cv2.LINE_AA, 4)
  for ch in scaled:
    _ellipse(img, ch, 0.05)
  if view in ("A3C", "PLAX", "A5C"):  # aortic outflow tract / root
    if view == "A3C":
      cv2.line(img, (62, 74), (82, 30), 0.78, 12, cv2.LINE_AA)
      cv2.line(img, (62, 74), (82, 30), 0.05, 7, cv2.LINE_AA)
    elif view == "PLAX":
      cv2.line(img, (74, 58), (108, 52), 0.78, 15, cv2.LINE_AA)
      cv2.line(img, (74, 58), (108, 52), 0.05, 10, cv2.LINE_AA)
    else:
      _ellipse(img, (55, 70, 6, 9, 0), 0.05)
  if view == "PSAX":  # papillary muscles
    _ellipse(img, (50, 68, 3 + c, 3 + c, 0), 0.7)
    _ellipse(img, (66, 68, 3 + c, 3 + c, 0), 0.7)
  # valve leaflets: bright lines at the atrioventricular junction, open in diastole
  if view in ("A2C", "A3C", "A4C", "A5C"):
    open_ = 1.0 - c
    for (cx, cy, ax, ay, _), i in zip(scaled, range(len(scaled))):
      if i in vent:
        y = int(cy + ay)
        cv2.line(img, (int(cx - ax), y), (int(cx - ax + 6), y + int(6 * open_)), 0.9, 1, cv2.LINE_AA)
        cv2.line(img, (int(cx + ax), y), (int(cx + ax - 6), y + int(6 * open_)), 0.9, 1, cv2.LINE_AA)
  return img


def _strip_columns(view: str, times: np.ndarray, hr: float, r0: float, p: dict) -> np.ndarray:
  """Strip image (CANVAS rows, len(times) columns) for Doppler / M-mode at the given column times."""
  h = CANVAS
  rr = 60.0 / hr
  sys = min(DEFAULT_QTC_S * math.sqrt(rr), 0.8 * rr)
  ph = np.mod(times - r0, rr)
  rows = np.arange(h, dtype=np.float64)[:, None]
  out = np.zeros((h, len(times)), np.float32)
  if view == "M_MODE":
    c = contraction(times, hr, r0)[None, :]
    mid = 78.0
    half = (16.0 - 8.0 * c) * p["depth"]  # LV cavity half-width in the strip
    wall = 6.0 + 4.0 * c
    sept_top, post_bot = mid - half - wall, mid + half + wall
    out += 0.25
    out += 0.5 * ((rows > sept_top) & (rows < mid - half))
    out += 0.55 * ((rows > mid + half) & (rows < post_bot))
    out -= 0.2 * ((rows >= mid - half) & (rows <= mid + half))
    out += 0.8 * (np.abs(rows - (post_bot + 2)) < 1.5)  # pericardium
    out += 0.3 * (np.abs(rows - (sept_top - 9 + 2 * c)) < 1.0)  # RV free wall
    out[: 36] = 0.0  # scout image area
    return out
  if view == "CW_DOPPLER":  # aortic outflow: systolic, downward from the baseline, filled
    base = 40.0
    env = np.where(ph < sys, np.sin(np.pi * np.clip(ph / sys, 0, 1)) ** 1.3, 0.0) * 58.0 * p["depth"]
    depth = rows - base
    out += (depth >= 0) * (depth <= env[None, :]) * (0.35 + 0.5 * depth / np.maximum(env[None, :], 1))
  else:  # PW mitral inflow: diastolic E and A waves above the baseline, hollow (spectral window)
    base = 95.0
    d = ph - sys
    dia = rr - sys
    e = np.exp(-0.5 * ((d - 0.25 * dia) / (0.14 * dia)) ** 2) * (d > 0)
    a = 0.65 * np.exp(-0.5 * ((d - 0.8 * dia) / (0.09 * dia)) ** 2) * (d > 0)
    env = (e + a) * 45.0 * p["depth"]
    height = base - rows
    band = (height >= 0) & (height <= env[None, :]) & (height >= env[None, :] - 5.0)
    out += band * 0.85 + (height >= 0) * (height <= env[None, :]) * 0.12
  out += 0.7 * (np.abs(rows - base) < 0.8)  # baseline
  out[: 26] = 0.0
  return out


def render_video(view: str, n_frames: int, fps: float, hr_bpm: float, first_r_s: float, rng: np.random.Generator,
                 size: int = CANVAS) -> np.ndarray:
  """Render a cine of ``view`` -> uint8 (T, size, size, 3) grey RGB."""
  if view not in VIEWS:
    raise UserError(f"unknown view {view!r}; known views: {', '.join(VIEWS)}")
  p = dict(gain=rng.uniform(0.8, 1.2), depth=rng.uniform(0.85, 1.1), rot=rng.uniform(-10, 10),
           shift=rng.uniform(-5, 5, 2))
  t = np.arange(n_frames) / fps
  static = rng.rayleigh(1.0, (CANVAS, CANVAS)).astype(np.float32)
  frames = np.empty((n_frames, CANVAS, CANVAS), np.float32)
  if view in STRIP_VIEWS:
    cols = np.arange(CANVAS) / CANVAS * SWEEP_S
    scout = cv2.resize(_bmode_frame("A4C" if view != "M_MODE" else "PLAX", 0.3, p), (36, 26 if view != "M_MODE" else 34))
    scout *= cv2.resize(_sector_mask(CANVAS), scout.shape[::-1])
    for k in range(n_frames):
      frames[k] = _strip_columns(view, t[k] - SWEEP_S + cols, hr_bpm, first_r_s, p)
      frames[k, 1 : 1 + scout.shape[0], 38 : 38 + scout.shape[1]] = scout
      frames[k, :, -2 - (k % 3) :] *= 0.0 if view != "M_MODE" else 1.0  # sweep cursor gap
  else:
    m = cv2.getRotationMatrix2D((CANVAS / 2, 4.0), p["rot"], p["depth"])
    m[:, 2] += p["shift"]
    mask = _sector_mask(CANVAS)
    yy = np.arange(CANVAS, dtype=np.float32)[:, None] / CANVAS
    atten = (1.05 - 0.45 * yy ** 1.5) * np.ones((1, CANVAS), np.float32)
    cs = contraction(t, hr_bpm, first_r_s)
    for k in range(n_frames):
      img = cv2.warpAffine(_bmode_frame(view, float(cs[k]), p), m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR,
                           borderValue=0.32)
      frames[k] = img * mask * atten
  noise = 0.75 * static[None] + 0.25 * rng.rayleigh(1.0, frames.shape).astype(np.float32)
  for k in range(n_frames):
    cv2.GaussianBlur(noise[k], (0, 0), 0.7, dst=noise[k])
  frames = frames * noise / math.sqrt(math.pi / 2) * p["gain"]
  out = np.clip(frames * 255 + 0.5, 0, 255).astype(np.uint8)
  if size != CANVAS:
    out = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in out])
  return np.repeat(out[..., None], 3, axis=-1)


def _first_r_peak(rng: np.random.Generator, hr_bpm: float, duration_s: float, margin_s: float = 0.06) -> float:
  """Time of the first R peak, chosen so that no R peak lies within ``margin_s`` of either end of the trace
  (a beat cut in half at the edge has no well-defined R; the ground truth then lists exactly the whole beats)."""
  rr = 60.0 / hr_bpm
  for _ in range(50):
    r0 = float(rng.uniform(margin_s, max(rr - margin_s, margin_s + 1e-3)))
    last = r0 + rr * np.floor((duration_s - r0) / rr)
    if duration_s - last > margin_s and last + rr - duration_s > margin_s:
      return r0
  return r0


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
  if path.suffix == ".avi":
    write_avi(path, frames, fps)
    return
  t, h, w, _ = frames.shape
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h), True)
  if not writer.isOpened():
    raise OSError(f"OpenCV could not open {path} for writing (mp4v)")
  try:
    for f in frames:
      writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
  finally:
    writer.release()


def _write_wfdb(stem: Path, ecg: np.ndarray, fs: float) -> None:
  import wfdb

  wfdb.wrsamp(stem.name, fs=fs, units=["mV"], sig_name=["II"], p_signal=ecg[:, None].astype(np.float64),
              fmt=["16"], write_dir=str(stem.parent))


def generate(out_dir: str | Path, num_per_class: int = 8, seed: int = 0, *, size: int = CANVAS,
             min_frames: int = 32, max_frames: int = 48, images: bool = True, videos: bool = True) -> Path:
  """Write ``num_per_class`` images and cines per view (raw layout in the module docstring). Deterministic."""
  if num_per_class < 1:
    raise UserError(f"--num-per-class must be >= 1; got {num_per_class}")
  if not 8 <= min_frames <= max_frames:
    raise UserError(f"frame range must satisfy 8 <= --min-frames <= --max-frames; got {min_frames}..{max_frames}")
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  truth = []
  total = len(VIEWS) * num_per_class * (int(images) + int(videos))
  with tqdm(total=total, desc="echo_views phantoms", unit="file") as bar:
    for v, view in enumerate(VIEWS):
      for i in range(num_per_class):
        rng = np.random.default_rng([seed, v, i])  # per-item stream: same item whatever N is
        stem = f"{view}_{i:04d}"
        if images:
          hr = rng.uniform(60, 130)
          img = render_video(view, 1, 25.0, hr, rng.uniform(0, 60 / hr), rng, size)[0]
          ext = ".jpg" if i % 4 == 3 else ".png"
          d = out / "images" / view
          d.mkdir(parents=True, exist_ok=True)
          cv2.imwrite(str(d / (stem + ext)), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
          bar.update(1)
        if videos:
          hr = float(rng.uniform(60, 130))
          fps = float(rng.choice([20.0, 25.0, 30.0]))
          n = int(rng.integers(min_frames, max_frames + 1))
          first_r = _first_r_peak(rng, hr, n / fps)
          frames = render_video(view, n, fps, hr, first_r, rng, size)
          d = out / "videos" / view
          d.mkdir(parents=True, exist_ok=True)
          ext = ".mp4" if i % 4 == 1 else ".avi"
          _write_video(d / (stem + ext), frames, fps)
          ecg_fs = float(rng.choice([250.0, 500.0]))
          ecg, r_times = synthesize_ecg(n / fps, ecg_fs, hr, first_r_s=first_r, rng=rng)
          if i % 3 == 2:
            _write_wfdb(d / stem, ecg, ecg_fs)
          else:
            write_ecg_csv(d / (stem + ".csv"), ecg, ecg_fs)
          ed = np.round(r_times * fps).astype(int)
          ed = ed[ed < n]
          truth.append((f"videos/{view}/{stem}{ext}", view, fps, n, f"{hr:.3f}", ecg_fs,
                        " ".join(f"{x:.4f}" for x in r_times), " ".join(map(str, ed))))
          bar.update(1)
  if videos:
    with open(out / "ground_truth.csv", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["file", "view", "fps", "num_frames", "hr_bpm", "ecg_fs", "r_times_s", "ed_frames"])
      w.writerows(truth)
  return out


def read_ground_truth(root: str | Path) -> dict[str, dict]:
  """The phantom truth table: file (relative) -> {view, fps, num_frames, hr_bpm, ecg_fs, r_times_s, ed_frames}."""
  rows = {}
  with open(Path(root) / "ground_truth.csv", newline="") as f:
    for r in csv.DictReader(f):
      rows[r["file"]] = dict(view=r["view"], fps=float(r["fps"]), num_frames=int(r["num_frames"]),
                             hr_bpm=float(r["hr_bpm"]), ecg_fs=float(r["ecg_fs"]),
                             r_times_s=np.array([float(x) for x in r["r_times_s"].split()]),
                             ed_frames=np.array([int(x) for x in r["ed_frames"].split()], np.int64))
  return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--num-per-class", type=int, default=8, help="images and cines per view (default 8)")
  parser.add_argument("--size", type=int, default=CANVAS, help="frame size in pixels (default 112)")
  parser.add_argument("--min-frames", type=int, default=32)
  parser.add_argument("--max-frames", type=int, default=48)
  parser.add_argument("--no-images", action="store_true", help="write cines only")
  parser.add_argument("--no-videos", action="store_true", help="write still frames only")


def generate_from_args(args: argparse.Namespace) -> Path:
  return generate(args.out, args.num_per_class, args.seed, size=args.size, min_frames=args.min_frames,
                  max_frames=args.max_frames, images=not args.no_images, videos=not args.no_videos)
