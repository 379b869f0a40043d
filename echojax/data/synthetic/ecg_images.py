"""Phantom 12-lead ECG printouts (scans and phone photos) of PTB-XL's five superclasses, for ``ecg_images``.

Each image is a printout drawn with matplotlib on ECG paper (A4 landscape): pink 1 mm minor and red 5 mm major
grid, 25 mm/s, 10 mm/mV, the standard 3x4 layout (I, II, III | aVR, aVL, aVF | V1-V3 | V4-V6, 2.5 s each, cut
from one simultaneous 10 s recording) and a 10 s lead II rhythm strip, lead labels, a 1 mV calibration pulse per
row and a header (fake name, ID, date; rate, PR, QRS, QT/QTc, axes). The signals come from
:func:`echojax.data.synthetic.ecg.synthesize_12lead`, whose morphology shows each class the way a reader sees it
(:func:`~echojax.data.synthetic.ecg.ecg12_params`): MI's Q waves and ST elevation in one territory, STTC's ST
depression and T inversion, CD's wide bundle-branch-block QRS, HYP's high voltage with strain.

A printout is drawn at 100-200 dpi (``--dpi``) and becomes a file in one of three ways: a digital export (1 in 5:
the page as drawn, PNG), a flatbed scan (paper tint, the lamp's falloff, up to 1.5 degrees of rotation, light blur
and noise) or a phone photo (uneven light and vignetting, up to 3 degrees of rotation, a mild perspective on a
darker desk, blur, sensor noise); scans and photos are JPEG (quality 60-95). Each patient keeps
one morphology (axis, amplitudes, MI territory or block type) over its 1-3 printouts; heart rate, noise and the
acquisition vary per printout. Deterministic: the same seed gives the same files, and item ``i`` of a class is
the same whatever ``--num-per-class`` is.

Layouts (the two that ``tfds_builders/ecg_images`` reads)::

    <out>/labels.csv + <out>/images/<patient>_<k>.jpg|png      "csv" (default): columns file,label,patient
    <out>/<class>/<patient>_<k>.jpg|png                         "folders": one folder per class, no patient ids

plus ``<out>/phantom_truth.csv`` (file, label, variant, patient, heart rate, QRS ms, Sokolow-Lyon mV, dpi,
rotation, kind), which the builder does not read. Time: the demo set (40 per class, 100-200 dpi) takes 53-61 s
on this project's 2-core machine (about 0.3 s a printout), 114 MB on disk.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from echojax.data.labels import ECG_SUPERCLASSES
from echojax.data.synthetic.ecg import LEADS_12, ecg12_params, synthesize_12lead
from echojax.errors import UserError

PAGE_MM = (297.0, 210.0)  # A4 landscape, (width, height)
GRID_MM = (10.0, 8.0, 287.0, 184.0)  # x0, y0, x1, y1 of the printed grid (y up, from the page's bottom)
MM_PER_S, MM_PER_MV = 25.0, 10.0
FS = 500.0  # Hz of the synthetic recording
TRACE_X0 = 20.0  # mm: the traces start here, after the calibration pulse
SEGMENT_S = 2.5
ROW_BASELINES_MM = (164.0, 124.0, 84.0, 36.0)  # three 3x4 rows, then the rhythm strip
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
DPI_RANGE = (100.0, 200.0)
FIRST = ("ANNA", "JOHN", "MARIA", "PETER", "LENA", "OMAR", "YUKI", "IVAN", "SARA", "LUIS", "NOOR", "TOM")
LAST = ("DOE", "SMITH", "MUELLER", "ROSSI", "TANAKA", "NOVAK", "SILVA", "KHAN", "MARTIN", "BERG", "LEE", "COHEN")
HR_RANGE = (52.0, 105.0)


def lead_index(name: str) -> int:
  return LEADS_12.index(name)


def sokolow_lyon_mv(x: np.ndarray, r_times: np.ndarray, fs: float = FS) -> float:
  """S in V1 + R in V5 (mV), the deepest/highest sample within 60 ms of each R peak, averaged over the beats."""
  w = int(0.06 * fs)
  v1, v5 = x[lead_index("V1")], x[lead_index("V5")]
  vals = [(-v1[k - w:k + w].min() + v5[k - w:k + w].max()) for k in (r_times * fs).astype(int) if w <= k < len(v1) - w]
  return float(np.mean(vals)) if vals else float("nan")


def _grid(ax, rng: np.random.Generator) -> None:
  from matplotlib.collections import LineCollection

  x0, y0, x1, y1 = GRID_MM
  hue = rng.uniform(-0.06, 0.06)
  minor = (1.0, 0.78 + hue, 0.80 + hue)
  major = (0.93, 0.42 + hue, 0.45 + hue)
  xs, ys = np.arange(x0, x1 + 1e-6, 1.0), np.arange(y0, y1 + 1e-6, 1.0)
  segs = {True: [], False: []}
  for i, x in enumerate(xs):
    segs[i % 5 == 0].append(((x, y0), (x, y1)))
  for i, y in enumerate(ys):
    segs[i % 5 == 0].append(((x0, y), (x1, y)))
  ax.add_collection(LineCollection(segs[False], colors=[minor], linewidths=0.35, zorder=1))
  ax.add_collection(LineCollection(segs[True], colors=[major], linewidths=0.75, zorder=2))


def _calibration(baseline: float) -> tuple[list[float], list[float]]:
  """A 1 mV, 200 ms square pulse drawn before a row (10 mm high, 5 mm wide)."""
  x = [12.5, 14.0, 14.0, 19.0, 19.0, TRACE_X0]
  y = [baseline, baseline, baseline + MM_PER_MV, baseline + MM_PER_MV, baseline, baseline]
  return x, y


def _header(ax, info: dict, rng: np.random.Generator, patient: str) -> None:
  name = f"{LAST[int(rng.integers(len(LAST)))]}, {FIRST[int(rng.integers(len(FIRST)))]}"
  date = f"20{rng.integers(10, 25):02d}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
  clock = f"{rng.integers(7, 20):02d}:{rng.integers(0, 60):02d}"

  def jitter(v: float, sd: float) -> int:  # a machine's measurement error
    return int(round(v + rng.normal(0, sd)))

  kw = dict(fontsize=7.5, family="DejaVu Sans", va="bottom", zorder=5)
  y = PAGE_MM[1] - 9.0
  ax.text(10, y + 4.2, f"{name}    ID: {patient.upper()}-{rng.integers(1000, 9999)}    "
          f"{('F', 'M')[int(rng.integers(2))]}  {rng.integers(25, 90)} y    {date} {clock}", fontweight="bold", **kw)
  ax.text(10, y, f"Vent. rate {jitter(info['hr_bpm'], 1)} BPM    PR int {jitter(info['pr_ms'], 4)} ms    "
          f"QRS dur {jitter(info['qrs_ms'], 4)} ms    QT/QTc {jitter(info['qt_ms'], 6)}/{jitter(info['qtc_ms'], 6)} ms"
          f"    QRS axis {jitter(info['axis_deg'], 5)}", **kw)
  ax.text(PAGE_MM[0] - 10, y + 4.2, "12-lead ECG, standard placement", ha="right", **{**kw, "fontsize": 6.5})
  ax.text(10, 3.0, f"{MM_PER_S:.0f} mm/s    {MM_PER_MV:.0f} mm/mV    0.05-150 Hz    50~", **{**kw, "fontsize": 6.5})


def render_page(x: np.ndarray, info: dict, rng: np.random.Generator, dpi: float, patient: str) -> np.ndarray:
  """The printed page (H, W, 3) uint8 at ``dpi`` for 12 leads ``x`` (mV, (12, N) at FS over 10 s)."""
  import matplotlib
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  with matplotlib.rc_context(matplotlib.rcParamsDefault):
    fig = Figure(figsize=(PAGE_MM[0] / 25.4, PAGE_MM[1] / 25.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, PAGE_MM[0])
    ax.set_ylim(0, PAGE_MM[1])
    ax.axis("off")
    _grid(ax, rng)
    ink = tuple(rng.uniform(0.0, 0.15, 3))
    lw = rng.uniform(0.6, 0.9)
    n_seg = int(SEGMENT_S * FS)
    t_mm = np.arange(x.shape[1]) / FS * MM_PER_S
    lead_kw = dict(fontsize=8, family="DejaVu Sans", zorder=5, color=ink)
    for row, leads in enumerate(LAYOUT):
      base = ROW_BASELINES_MM[row]
      ax.plot(*_calibration(base), color=ink, lw=lw, zorder=4)
      for col, lead in enumerate(leads):
        sl = slice(col * n_seg, (col + 1) * n_seg)
        xs = TRACE_X0 + t_mm[sl]
        ax.plot(xs, base + MM_PER_MV * x[lead_index(lead), sl], color=ink, lw=lw, zorder=4)
        ax.text(xs[0] + 1.5, base + 6.5, lead, **lead_kw)
        if col:  # the lead change mark
          ax.plot([xs[0], xs[0]], [base - 2.5, base + 2.5], color=ink, lw=lw, zorder=4)
    base = ROW_BASELINES_MM[3]
    ax.plot(*_calibration(base), color=ink, lw=lw, zorder=4)
    ax.plot(TRACE_X0 + t_mm, base + MM_PER_MV * x[lead_index(RHYTHM_LEAD)], color=ink, lw=lw, zorder=4)
    ax.text(TRACE_X0 + 1.5, base + 6.5, RHYTHM_LEAD, **lead_kw)
    _header(ax, info, rng, patient)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


KINDS = (("digital", 0.2), ("scan", 0.45), ("phone", 0.35))  # how the printout became a file, and how often


def acquire(page: np.ndarray, rng: np.random.Generator, kind: str) -> tuple[np.ndarray, dict]:
  """What a flatbed scan or a phone photo does to a printed page: tint, light, pose, blur, noise. A ``digital``
  export (the machine's own PDF/PNG rendering) is the page as drawn."""
  if kind == "digital":
    return page, dict(kind=kind, rotation_deg=0.0, blur_sigma=0.0)
  h, w = page.shape[:2]
  phone = kind == "phone"
  img = page.astype(np.float32)
  img *= np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.86, 1.0)], np.float32)  # paper tint (RGB)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  xx, yy = xx / w - 0.5, yy / h - 0.5
  if phone:  # a light from one side, a shadow, vignetting
    ang = rng.uniform(0, 2 * np.pi)
    light = 1.0 - rng.uniform(0.1, 0.3) * (0.5 + xx * math.cos(ang) + yy * math.sin(ang))
    light -= rng.uniform(0.0, 0.25) * (xx ** 2 + yy ** 2)
  else:  # the scanner lamp's falloff across the bed
    light = 1.0 - rng.uniform(0.0, 0.08) * (0.5 + xx)
  img *= light[..., None]
  rot = rng.uniform(-3.0, 3.0) if phone else rng.uniform(-1.5, 1.5)
  src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
  jitter = (0.025 if phone else 0.002) * np.array([w, h], np.float32)
  scale = rng.uniform(0.88, 0.96) if phone else rng.uniform(0.97, 1.0)
  centre = np.array([w / 2, h / 2], np.float32)
  c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
  dst = (src - centre) @ np.array([[c, s], [-s, c]], np.float32) * scale + centre
  dst += rng.uniform(-1, 1, size=(4, 2)).astype(np.float32) * jitter
  bg = rng.uniform(60, 140, 3) if phone else rng.uniform(235, 255, 3)  # a desk, or the scanner lid
  img = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in bg))
  sigma = rng.uniform(0.3, 1.2) if phone else rng.uniform(0.0, 0.7)
  if sigma > 0.35:
    img = cv2.GaussianBlur(img, (0, 0), sigma)
  img += rng.normal(0.0, rng.uniform(1.0, 4.0 if phone else 2.0), size=img.shape).astype(np.float32)
  return np.clip(img, 0, 255).astype(np.uint8), dict(kind=kind, rotation_deg=rot, blur_sigma=sigma)


def render_printout(label: str, rng: np.random.Generator, *, patient_params: dict | None = None,
                    dpi: float | None = None, patient: str = "p0") -> tuple[np.ndarray, np.ndarray, dict]:
  """One phantom printout of class ``label``: (image (H, W, 3) uint8 RGB, signals (12, N) mV, facts).

  ``patient_params`` (from :func:`~echojax.data.synthetic.ecg.ecg12_params`) fixes the morphology; drawn from
  ``rng`` when None. ``dpi`` is drawn from DPI_RANGE when None."""
  params = patient_params if patient_params is not None else ecg12_params(label, rng)
  hr = rng.uniform(*HR_RANGE)
  x, info = synthesize_12lead(params, 10.0, FS, hr, rng=rng)
  dpi = float(dpi if dpi is not None else rng.uniform(*DPI_RANGE))
  page = render_page(x, info, rng, dpi, patient)
  kind = KINDS[int(rng.choice(len(KINDS), p=[k[1] for k in KINDS]))][0]
  img, acq = acquire(page, rng, kind)
  facts = dict(info, label=label, variant=params["variant"], dpi=dpi, **acq,
               sokolow_mv=sokolow_lyon_mv(x, info["r_times"]))
  return img, x, facts


def _patient_sizes(seed: int, c: int, n: int) -> list[int]:
  """The patient index of each of a class's ``n`` items: runs of 1-3 printouts, independent of ``n``."""
  rng = np.random.default_rng([seed, c, 999_999])
  out: list[int] = []
  p = 0
  while len(out) < n:
    out += [p] * int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    p += 1
  return out[:n]


def generate(out_dir: str | Path, num_per_class: int = 40, seed: int = 0, *, layout: str = "csv",
             dpi: tuple[float, float] = DPI_RANGE, classes: tuple[str, ...] = ECG_SUPERCLASSES) -> Path:
  """Write ``num_per_class`` printouts per class in ``layout`` ("csv" or "folders"); see the module docstring."""
  if num_per_class < 1:
    raise UserError(f"--num-per-class must be >= 1; got {num_per_class}")
  if layout not in ("csv", "folders"):
    raise UserError(f"--layout must be csv or folders; got {layout!r}")
  lo, hi = (float(dpi[0]), float(dpi[-1]))
  if not 50 <= lo <= hi <= 600:
    raise UserError(f"--dpi must be one value or a range LO HI within 50..600; got {dpi}")
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  rows, truth = [], []
  with tqdm(total=len(classes) * num_per_class, desc="ecg_images phantoms", unit="img") as bar:
    for c, label in enumerate(classes):
      patients = _patient_sizes(seed, c, num_per_class)
      params_of: dict[int, dict] = {}
      for i in range(num_per_class):
        p = patients[i]
        if p not in params_of:  # the patient's morphology: its own stream, whichever printout comes first
          params_of[p] = ecg12_params(label, np.random.default_rng([seed, c, 1_000_000 + p]))
        rng = np.random.default_rng([seed, c, i])  # per-item stream: same item whatever N is
        pid = f"p{c}{p:04d}"
        k = patients[:i].count(p)
        img, _, facts = render_printout(label, rng, patient_params=params_of[p], dpi=rng.uniform(lo, hi),
                                        patient=pid)
        ext = ".png" if facts["kind"] == "digital" else ".jpg"
        rel = Path("images" if layout == "csv" else label) / f"{pid}_{k}{ext}"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))] if ext == ".jpg" else []
        ok, buf = cv2.imencode(ext, bgr, params)
        if not ok:
          raise OSError(f"OpenCV could not encode {rel}")
        (out / rel).write_bytes(buf.tobytes())
        rows.append((rel.as_posix(), label, pid))
        truth.append((rel.as_posix(), label, facts["variant"], pid, f"{facts['hr_bpm']:.1f}",
                      f"{facts['qrs_ms']:.0f}", f"{facts['sokolow_mv']:.2f}", f"{facts['dpi']:.0f}",
                      f"{facts['rotation_deg']:.2f}", facts["kind"]))
        bar.update(1)
  if layout == "csv":
    with open(out / "labels.csv", "w", newline="") as f:
      wr = csv.writer(f)
      wr.writerow(["file", "label", "patient"])
      wr.writerows(rows)
  with open(out / "phantom_truth.csv", "w", newline="") as f:
    wr = csv.writer(f)
    wr.writerow(["file", "label", "variant", "patient", "hr_bpm", "qrs_ms", "sokolow_mv", "dpi", "rotation_deg",
                 "kind"])
    wr.writerows(truth)
  return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--num-per-class", type=int, default=40, help="printouts per class (default 40)")
  parser.add_argument("--layout", choices=["csv", "folders"], default="csv",
                      help="csv: labels.csv with patient ids (default); folders: ROOT/<class>/")
  parser.add_argument("--dpi", type=float, nargs="+", default=list(DPI_RANGE), metavar="DPI",
                      help="scan resolution: one value, or a range LO HI drawn per printout (default 100 200)")


def generate_from_args(args: argparse.Namespace) -> Path:
  if len(args.dpi) > 2:
    raise UserError(f"--dpi takes one value or two (LO HI); got {len(args.dpi)}")
  return generate(args.out, args.num_per_class, args.seed, layout=args.layout, dpi=tuple(args.dpi))
