"""EchoNet-Dynamic phantoms: apical 4-chamber echo videos written in the real raw layout.

    python -m echojax.data.synthetic echonet --out DIR [--num-videos N] [--seed S]

writes ``FileList.csv``, ``VolumeTracings.csv`` and ``Videos/<FileName>.avi`` (112x112, MJPG, grey in 3 channels)
exactly as EchoNet-Dynamic ships them, so the builder reads phantoms and real data through one code path.

Each phantom is an apical 4-chamber view inside an ultrasound sector: LV with myocardial wall (right of the
septum, apex at the top), RV, LA and RA, mitral leaflets that open in diastole, speckle, depth attenuation, and
per-video gain, depth, sector width, rotation and translation. The LV cavity follows a physiological volume curve
(ejection, rapid filling, diastasis, atrial kick) over at least two beats at 45-130 bpm, filmed at 20-100 FPS.

Labels come from the tracings, like the real set: one ED and one ES frame per video are traced as a long-axis
row plus 20 perpendicular chords, and EDV/ESV are the single-plane method-of-discs volumes of those traces
(``echojax.data.echonet.disc_volume`` with ``PHANTOM_CM_PER_PIXEL`` cm per pixel, so EDV is ~50-250 mL);
EF = 100 * (1 - ESV/EDV). Deterministic for a seed: each video draws from its own ``default_rng([seed, i])``.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from echojax.data.echonet import FILELIST_COLUMNS, PHANTOM_CM_PER_PIXEL, TRACING_COLUMNS, disc_volume
from echojax.data.synthetic import phantom
from echojax.data.video import write_avi

SIZE = 112
NUM_CHORDS = 20
SPLIT_FRACTIONS = (("TRAIN", 0.75), ("VAL", 0.13), ("TEST", 0.12))


def cycle(phase: np.ndarray, t_es: float) -> np.ndarray:
  """Normalised LV volume over one beat (1 = end-diastole, 0 = end-systole) for phase in [0, 1).

  Ejection (cosine fall to ES at ``t_es``), rapid filling to 80%, slow diastasis to 85%, atrial kick to 100%.
  """
  p = np.mod(phase, 1.0)
  fill_end, kick = t_es + 0.25, 0.85
  out = np.empty_like(p)
  a = p < t_es
  out[a] = 0.5 * (1 + np.cos(np.pi * p[a] / t_es))
  b = (p >= t_es) & (p < fill_end)
  out[b] = 0.8 * 0.5 * (1 - np.cos(np.pi * (p[b] - t_es) / 0.25))
  c = (p >= fill_end) & (p < kick)
  out[c] = 0.8 + 0.05 * (p[c] - fill_end) / (kick - fill_end)
  d = p >= kick
  out[d] = 0.85 + 0.15 * 0.5 * (1 - np.cos(np.pi * (p[d] - kick) / (1 - kick)))
  return out


def lv_halfwidth(u: np.ndarray, width: float) -> np.ndarray:
  """LV cavity half-width at relative position u in [0, 1] from apex (0) to the mitral plane (1): a bullet
  (half-ellipse, slightly narrowed at the base so the widest point sits just above the annulus)."""
  u = np.clip(u, 0.0, 1.0)
  return width * np.sqrt(np.clip(1 - (1 - u) ** 2, 0, None)) * (1 - 0.12 * u ** 3)


def sample_params(rng: np.random.Generator, min_frames: int = 28) -> dict:
  """Draw one video's physiology and acquisition parameters."""
  hr = rng.uniform(45, 130)
  fps = 50.0 if rng.random() < 0.6 else float(rng.integers(20, 101))
  period = fps * 60.0 / hr  # frames per beat
  beats = rng.uniform(2.2, 3.4) if rng.random() > 0.06 else rng.uniform(4.0, 8.0)
  n_frames = int(np.clip(math.ceil(beats * period), max(min_frames, math.ceil(2.05 * period) + 1), 420))
  if rng.random() < 0.9:
    ef = float(np.clip(rng.normal(59, 10), 20, 85))
  else:
    ef = float(rng.uniform(10, 40))
  edv = float(np.clip(rng.lognormal(np.log(110), 0.28), 55, 230))
  edv = min(edv * (1 + 0.6 * max(0.0, 50 - ef) / 40), 245)  # low EF hearts are dilated
  return dict(hr=hr, fps=fps, n_frames=n_frames, ef_target=ef, edv_target=edv)


def render_video(rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """Render (T, 112, 112) uint8 grey frames and the traced ED/ES frames {frame: (21, 4) X1,Y1,X2,Y2}."""
  hr, fps, n = params["hr"], params["fps"], params["n_frames"]
  cmpx = PHANTOM_CM_PER_PIXEL
  # LV geometry in 112-px units: half-ellipsoid with V = 2/3 pi W^2 L.
  l_d = 8.3 * (params["edv_target"] / 110.0) ** (1 / 3) / cmpx
  w_d = math.sqrt(params["edv_target"] / (2 / 3 * math.pi * l_d * cmpx)) / cmpx
  f = 1 - params["ef_target"] / 100.0  # ESV / EDV
  rl = f ** 0.2  # the long axis shortens less than the short axis
  rw = math.sqrt(f / rl)
  l_s, w_s = l_d * rl, w_d * rw
  wall_d = rng.uniform(5.0, 7.0)
  wall_s = wall_d * (1 + 0.6 * (1 - rw))
  t_es = float(np.clip(0.30 + 0.10 * (hr - 60) / 70, 0.28, 0.42))
  # time -> phase with mild beat-to-beat variability
  t = np.arange(n) / fps
  phase = rng.uniform() + hr / 60.0 * t + 0.03 * hr / 60.0 * np.sin(2 * np.pi * t / 4.0 + rng.uniform(0, 6.3))
  c = cycle(phase, t_es)
  # per-video acquisition: transducer, sector, depth, gain, rotation, translation
  apex_xy = (SIZE / 2 + rng.uniform(-3, 3), rng.uniform(-2, 2))
  half_angle = math.radians(rng.uniform(36, 45))
  depth = rng.uniform(100, 128)  # sector radius in px
  mask, r, _ = phantom.sector_geometry(SIZE, apex_xy, depth, half_angle, math.radians(rng.uniform(-3, 3)))
  att = phantom.attenuation(r, depth, rng.uniform(0.25, 0.6)) * mask
  gain = rng.uniform(0.7, 1.25)
  m = phantom.affine(1.0, math.radians(-8 + rng.uniform(-7, 7)),
                     apex_xy[0] + 2 + rng.uniform(-5, 5), apex_xy[1] + rng.uniform(9, 16))
  tissue, wall_v, blood = rng.uniform(0.18, 0.3), rng.uniform(0.65, 0.9), rng.uniform(0.02, 0.06)
  rv_w, rv_apex = rng.uniform(0.55, 0.8), rng.uniform(0.2, 0.32)
  la_r, ra_r = rng.uniform(0.8, 1.0), rng.uniform(0.7, 0.9)

  u = np.linspace(0, 1, 24)
  static = phantom.speckle(rng, (SIZE, SIZE), 0.8)
  fresh = phantom.speckle(rng, (n, SIZE, SIZE), 0.8)
  frames = np.empty((n, SIZE, SIZE), np.float32)
  geo = []
  for k in range(n):
    ck = c[k]
    L, W = l_s + (l_d - l_s) * ck, w_s + (w_d - w_s) * ck
    T = wall_s + (wall_d - wall_s) * ck
    geo.append((L, W))
    s = u * L
    hw = lv_halfwidth(u, W)
    cav = np.concatenate([np.stack([-hw, s], 1), np.stack([hw, s], 1)[::-1]])
    ue = np.linspace(0, 1, 24)
    se = -T + ue * (L + T)
    hwe = lv_halfwidth(ue, W + T) + 0.5
    epi = np.concatenate([np.stack([-hwe, se], 1), np.stack([hwe, se], 1)[::-1]])
    # RV: left of the septum, apex lower than the LV apex, moves with the LV
    rvs = np.linspace(rv_apex * l_d, L, 20)
    sept = lv_halfwidth(rvs / L, W + T) + 1.0
    rvw = rv_w * w_d * (0.8 + 0.2 * ck) * np.sqrt(np.clip((rvs - rvs[0]) / (L - rvs[0]), 0, 1))
    rv_cav = np.concatenate([np.stack([-sept, rvs], 1), np.stack([-sept - 2 * rvw, rvs], 1)[::-1]])
    rv_out = np.concatenate([np.stack([-sept + 1, rvs - 3], 1), np.stack([-sept - 2 * rvw - 3, rvs], 1)[::-1]])
    # atria below the valve planes, larger in systole (they fill while the ventricles empty)
    grow = 1 + 0.18 * (1 - ck)
    la = phantom.ellipse_points(0.0, L + 0.5 * T + 0.3 * l_d * la_r * grow, w_d * la_r * grow,
                                0.3 * l_d * la_r * grow, 0.0, 36)
    ra_cx = -(w_d + wall_d) - rv_w * w_d
    ra = phantom.ellipse_points(ra_cx, L + 0.5 * T + 0.28 * l_d * ra_r * grow, 0.85 * rv_w * w_d * 1.6 * grow,
                                0.28 * l_d * ra_r * grow, 0.0, 36)
    img = np.full((SIZE, SIZE), tissue, np.float32)
    phantom.fill(img, [phantom.transform(p, m) for p in (epi, rv_out)], wall_v)
    phantom.fill(img, [phantom.transform(la * [1.12, 1.1] + [0, 0], m), phantom.transform(ra * [1.1, 1.1], m)],
                 wall_v * 0.85)
    phantom.fill(img, [phantom.transform(p, m) for p in (cav, rv_cav, la, ra)], blood)
    # mitral leaflets: closed across the annulus in systole, open into the LV in diastole
    hb = float(lv_halfwidth(np.array([1.0]), W)[0])
    kp = float(np.mod(phase[k], 1.0))
    opening = float(np.clip((kp - t_es) / 0.08, 0.0, 1.0))
    for side in (-1.0, 1.0):
      closed, opened = np.array([side * 0.1 * hb, L - 1.5]), np.array([side * 0.55 * hb, 0.72 * L])
      tip = closed + (opened - closed) * opening
      phantom.polyline(img, phantom.transform(np.array([[side * hb, L], tip]), m), wall_v, 1)
    frames[k] = cv2.GaussianBlur(img, (0, 0), 0.9)
  frames *= (0.55 * static + 0.45 * fresh) * att * gain
  video = phantom.to_uint8(frames)
  # traced frames: ED = fullest frame of the first complete beat, ES = emptiest frame of that beat
  per = int(math.ceil(fps * 60.0 / hr))
  ed = int(np.argmax(c[:per + 1]))
  es = ed + int(np.argmin(c[ed:ed + per + 1]))
  traces = {}
  for fr in (es, ed):  # ES first, then ED (the order the real VolumeTracings.csv uses)
    L, W = geo[fr]
    uc = (np.arange(NUM_CHORDS) + 0.5) / NUM_CHORDS
    hw = lv_halfwidth(uc, W)
    rows = [np.concatenate([phantom.transform([0.0, L], m), phantom.transform([0.0, 0.0], m)])]
    for uu, h in zip(uc, hw):
      rows.append(np.concatenate([phantom.transform([-h, uu * L], m), phantom.transform([h, uu * L], m)]))
    traces[fr] = np.round(np.asarray(rows), 4)
  return video, traces


def _file_names(rng: np.random.Generator, n: int) -> list[str]:
  """Unique EchoNet-style names: 0X + 16 upper-case hex digits (no .avi)."""
  names, seen = [], set()
  while len(names) < n:
    name = "0X" + "".join(f"{b:02X}" for b in rng.integers(0, 256, size=8))
    if name not in seen:
      seen.add(name)
      names.append(name)
  return names


def _splits(rng: np.random.Generator, n: int) -> list[str]:
  """TRAIN/VAL/TEST about 75/13/12 (every split non-empty from 3 videos), in a seeded random order."""
  n_val = max(1, round(SPLIT_FRACTIONS[1][1] * n)) if n >= 3 else 0
  n_test = max(1, round(SPLIT_FRACTIONS[2][1] * n)) if n >= 3 else 0
  labels = ["VAL"] * n_val + ["TEST"] * n_test + ["TRAIN"] * (n - n_val - n_test)
  return [labels[i] for i in rng.permutation(n)]


def _fmt(x: float) -> str:
  return f"{x:.10g}"


def generate(out_dir: str | Path, num_videos: int = 200, seed: int = 0, *, min_frames: int = 28,
             progress: bool = True) -> Path:
  """Write ``num_videos`` phantoms in the EchoNet-Dynamic raw layout under ``out_dir``; returns ``out_dir``."""
  out = Path(out_dir)
  (out / "Videos").mkdir(parents=True, exist_ok=True)
  top = np.random.default_rng([seed, 1 << 30])
  names = _file_names(top, num_videos)
  splits = _splits(top, num_videos)
  file_rows, trace_rows = [], []
  for i in tqdm(range(num_videos), desc="echonet phantoms", unit="video", disable=not progress):
    rng = np.random.default_rng([seed, i])
    params = sample_params(rng, min_frames)
    video, traces = render_video(rng, params)
    write_avi(out / "Videos" / f"{names[i]}.avi", video, params["fps"])
    es, ed = list(traces)
    edv, esv = disc_volume(traces[ed]), disc_volume(traces[es])
    ef = 100.0 * (1 - esv / edv)
    file_rows.append([names[i], _fmt(round(ef, 4)), _fmt(round(esv, 4)), _fmt(round(edv, 4)), SIZE, SIZE,
                      _fmt(params["fps"]), len(video), splits[i]])
    for fr in (es, ed):
      for row in traces[fr]:
        trace_rows.append([f"{names[i]}.avi", *(_fmt(v) for v in row), fr])
  with open(out / "FileList.csv", "w", newline="") as f:
    wr = csv.writer(f, lineterminator="\n")
    wr.writerow(FILELIST_COLUMNS)
    wr.writerows(file_rows)
  with open(out / "VolumeTracings.csv", "w", newline="") as f:
    wr = csv.writer(f, lineterminator="\n")
    wr.writerow(TRACING_COLUMNS)
    wr.writerows(trace_rows)
  return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--num-videos", "--num", type=int, default=200, help="number of videos (default 200)")
  parser.add_argument("--min-frames", type=int, default=28, help="shortest video in frames (default 28)")


def generate_from_args(args: argparse.Namespace) -> Path:
  return generate(args.out, args.num_videos, args.seed, min_frames=args.min_frames)
