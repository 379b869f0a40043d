"""UNITY-like echo frame exports (800x600 RGB PNG), single-screen and dual-screen, for EchoSDNet.

Real UNITY Imaging exports are screen captures: a black frame with one ultrasound sector (single view) or two
sectors side by side (dual-screen capture, e.g. a colour-Doppler comparison), with vendor text overlays, a grey
scale bar and a green ECG trace. The phantoms imitate that look, so the builder and augmentation see realistic
layouts:

    <out>/images/<category>/<study_id>_<k>.png     (layout "folders": the category is the sub-folder)
    <out>/images/<study_id>_<k>.png + <out>/labels.csv   (layout "csv": columns file,category,study_id)

Categories follow UNITY's "<NN>_<view>" naming (e.g. 08_a4ch-full). A category is dual when its name contains
"dual" (the builder's default rule, see tfds_builders/unity); the generator uses a few such categories.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

SINGLE_CATEGORIES = [
    "01_a2ch-full", "05_a3ch-full", "08_a4ch-full", "12_a5ch-full", "17_doppler-ao", "26_plax-full-lv",
    "38_psax-lv-mid", "45_subcostal-heart", "52_suprasternal",
]
DUAL_CATEGORIES = ["56_dual-a4ch-colour", "57_dual-plax-colour", "58_dual-psax-compare"]
CATEGORIES = SINGLE_CATEGORIES + DUAL_CATEGORIES
WIDTH, HEIGHT = 800, 600


def _sector(img: np.ndarray, apex: tuple[int, int], radius: int, half_angle: float, rng: np.random.Generator,
            tilt: float = 0.0) -> None:
  """Draw one speckled ultrasound sector with a few dark chambers and bright walls into img (H, W, 3) uint8."""
  h, w = img.shape[:2]
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  dx, dy = xx - apex[0], yy - apex[1]
  r = np.hypot(dx, dy)
  ang = np.arctan2(dx, dy) - tilt
  inside = (r < radius) & (np.abs(ang) < half_angle) & (dy > 0)
  gain = rng.uniform(0.6, 1.1)
  tissue = rng.gamma(1.5, 35.0, size=(h, w)).astype(np.float32) * gain
  tissue *= np.clip(1.2 - r / radius * 0.6, 0.3, 1.2)  # depth attenuation
  # chambers: dark ellipses with bright rims, at view-dependent random places
  for _ in range(rng.integers(2, 5)):
    cr = rng.uniform(0.3, 0.8) * radius
    ca = rng.uniform(-0.6, 0.6) * half_angle + tilt
    cx, cy = apex[0] + cr * np.sin(ca), apex[1] + cr * np.cos(ca)
    ax, ay = rng.uniform(0.08, 0.18) * radius, rng.uniform(0.12, 0.25) * radius
    d = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    tissue = np.where(d < 1.0, tissue * 0.15, tissue)
    tissue = np.where((d >= 1.0) & (d < 1.5), tissue * 2.2, tissue)
  tissue = cv2.GaussianBlur(tissue, (5, 3), 0)  # speckle is elongated laterally, like real B-mode
  val = np.clip(tissue, 0, 255).astype(np.uint8)
  for c in range(3):
    img[..., c] = np.where(inside, val, img[..., c])


def _overlays(img: np.ndarray, rng: np.random.Generator, hr: float) -> None:
  """Vendor-like text, grey scale bar and a green ECG strip."""
  font = cv2.FONT_HERSHEY_SIMPLEX
  for i, text in enumerate([f"{rng.integers(17, 80)}Hz", f"{rng.integers(12, 20)}cm", "2D", f"{rng.integers(40, 90)}%",
                            "C 50", "P Low"]):
    cv2.putText(img, text, (10, 70 + 16 * i), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
  x0 = WIDTH - 45
  for y in range(95, 260):
    g = int(255 * (260 - y) / 165)
    img[y, x0:x0 + 12] = g
  cv2.putText(img, f"{int(hr)} bpm", (WIDTH - 70, HEIGHT - 20), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
  # ECG: baseline with R spikes at the heart rate
  xs = np.arange(50, 320)
  period = 60.0 / hr * 90.0  # pixels per beat at the strip's sweep speed
  phase = ((xs - 50) / period) % 1.0
  ys = 575 - 28 * np.exp(-((phase - 0.3) / 0.012) ** 2) + 6 * np.exp(-((phase - 0.55) / 0.05) ** 2)
  pts = np.stack([xs, ys], axis=1).astype(np.int32)
  cv2.polylines(img, [pts], False, (60, 220, 60), 1, cv2.LINE_AA)


def render(category: str, rng: np.random.Generator) -> np.ndarray:
  """One 800x600 RGB export frame for a category."""
  img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
  hr = rng.uniform(45, 120)
  if "dual" in category:
    for cx in (WIDTH // 4 + 10, 3 * WIDTH // 4 - 10):
      _sector(img, (cx + int(rng.integers(-15, 15)), 70 + int(rng.integers(-10, 10))), int(rng.uniform(300, 380)),
              rng.uniform(0.55, 0.7), rng, tilt=rng.uniform(-0.08, 0.08))
    if "colour" in category:  # colour-Doppler box on the right sector
      x, y = WIDTH // 2 + 120 + int(rng.integers(-30, 30)), 200 + int(rng.integers(-30, 30))
      patch = img[y:y + 90, x:x + 70].astype(np.int32)
      patch[..., 0] += rng.integers(60, 160)
      patch[..., 2] += rng.integers(0, 120)
      img[y:y + 90, x:x + 70] = np.clip(patch, 0, 255).astype(np.uint8)
  else:
    apex = (WIDTH // 2 + int(rng.integers(-40, 40)), 60 + int(rng.integers(-15, 15)))
    _sector(img, apex, int(rng.uniform(420, 500)), rng.uniform(0.65, 0.8), rng, tilt=rng.uniform(-0.1, 0.1))
  _overlays(img, rng, hr)
  return img


def generate(out_dir: str | Path, num_studies: int = 40, seed: int = 0, images_per_study: int = 3,
             layout: str = "folders", dual_fraction: float = 0.35) -> Path:
  """Write ``num_studies`` studies of ``images_per_study`` frames each; about ``dual_fraction`` of frames are dual."""
  out = Path(out_dir)
  (out / "images").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  rows = []
  total = num_studies * images_per_study
  with tqdm(total=total, desc="unity phantoms", unit="img") as bar:
    for s in range(num_studies):
      study = f"study{s:04d}"
      for k in range(images_per_study):
        pool = DUAL_CATEGORIES if rng.random() < dual_fraction else SINGLE_CATEGORIES
        cat = pool[int(rng.integers(len(pool)))]
        img = render(cat, rng)
        rel = Path("images") / (cat if layout == "folders" else "") / f"{study}_{k}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rows.append((rel.as_posix(), cat, study))
        bar.update(1)
  if layout == "csv":
    with open(out / "labels.csv", "w", newline="") as f:
      wr = csv.writer(f)
      wr.writerow(["file", "category", "study_id"])
      wr.writerows(rows)
  else:  # study ids for the folder layout, so splits can be grouped by study
    with open(out / "studies.csv", "w", newline="") as f:
      wr = csv.writer(f)
      wr.writerow(["file", "study_id"])
      wr.writerows((r[0], r[2]) for r in rows)
  return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--num-studies", type=int, default=40)
  parser.add_argument("--images-per-study", type=int, default=3)
  parser.add_argument("--layout", choices=["folders", "csv"], default="folders")
  parser.add_argument("--dual-fraction", type=float, default=0.35)


def generate_from_args(args: argparse.Namespace) -> Path:
  return generate(args.out, args.num_studies, args.seed, args.images_per_study, args.layout, args.dual_fraction)
