"""Phantom LVAD cohort: hospital-style apical four-chamber cines of patients who received a left-ventricular assist
device, and whether each died after implantation, in the raw layout ``tfds_builders/lvad`` reads.

Hospital cines do not look like EchoNet-Dynamic's 112 x 112 crops: each phantom is a native-size frame (480 x 640
by default) with the scan sector drawn off-centre on black, burned-in text (site, patient, date, MI/TIS, depth
scale), a probe orientation marker, and an ECG trace sweeping along the bottom. The heart inside the sector is
the EchoNet phantom (:func:`echojax.data.synthetic.echonet.render_video`) at the patient's ejection fraction,
enlarged to the sector's size; so the motion mask of ``echojax.data.sector`` (``motion="flow"``) has to find it,
and a model trained on EchoNet-Dynamic sees it as it saw EchoNet's crops only once the mask is applied.

Outcome: LVAD candidates have severely reduced function; each patient draws an EF in ``EF_RANGE`` and dies with
probability ``sigmoid((EF_MID - ef) / EF_SCALE)`` (lower EF, higher mortality), a weak, learnable link between
outcome and cardiac function: at the defaults 47 % die, and the true EF alone separates the outcomes with a
ROC-AUC of 0.77 (over 200,000 draws; the published transfer model's best fold-mean AUROC was 0.76), so a model can
only approach that through what it reads of the EF from the cines.

Layout::

    <out>/labels.csv                          patient_id,died,age,sex,intermacs  (died: 1 = died, 0 = survived)
    <out>/studies/<patient_id>/a4c_<k>.avi    1-2 cines per patient: MJPG AVI, or (every fourth patient) a
    <out>/studies/<patient_id>/a4c_<k>.dcm    multi-frame DICOM (grey, RLE Lossless, CineRate + FrameTime)
    <out>/phantom_truth.csv                   patient_id,file,ef,hr_bpm,fps,frames,format (not read by the builder)

Deterministic: the same seed gives the same files, and patient ``i`` is the same whatever ``--num-patients`` is.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from echojax.data.synthetic import echonet
from echojax.data.synthetic.ecg import synthesize_ecg
from echojax.data.video import write_avi

NATIVE = (480, 640)  # frame height, width
SECTOR_SIDE = 330  # the 112 px EchoNet phantom is enlarged to this side
SECTOR_XY = (215, 48)  # top-left corner of the enlarged phantom in the native frame
EF_RANGE = (10.0, 40.0)
EF_MID, EF_SCALE = 24.0, 8.0
ECG_BAND = (410, 455)  # rows of the ECG sweep
LABEL_COLUMNS = ("patient_id", "died", "age", "sex", "intermacs")
TRUTH_COLUMNS = ("patient_id", "file", "ef", "hr_bpm", "fps", "frames", "format")


def outcome_probability(ef: float | np.ndarray) -> float | np.ndarray:
  """P(died | EF) of the phantom cohort."""
  return 1.0 / (1.0 + np.exp(-(EF_MID - np.asarray(ef, np.float64)) / EF_SCALE))


def _overlay_text(frame: np.ndarray, patient: str, k: int, rng_text: dict) -> None:
  font, white = cv2.FONT_HERSHEY_SIMPLEX, (220, 220, 220)
  cv2.putText(frame, "ST. ELSEWHERE CARDIOLOGY", (12, 22), font, 0.5, white, 1, cv2.LINE_AA)
  cv2.putText(frame, f"ID {patient.upper()}  {rng_text['date']}", (12, 42), font, 0.45, white, 1, cv2.LINE_AA)
  cv2.putText(frame, f"A4C  cine {k + 1}", (12, 62), font, 0.45, white, 1, cv2.LINE_AA)
  cv2.putText(frame, f"MI {rng_text['mi']:.1f}  TIS {rng_text['tis']:.1f}", (NATIVE[1] - 150, 22), font, 0.45, white,
              1, cv2.LINE_AA)
  for j, depth in enumerate(range(0, 17, 4)):  # the depth scale right of the sector
    y = SECTOR_XY[1] + int(j * SECTOR_SIDE / 4.3)
    cv2.line(frame, (NATIVE[1] - 60, y), (NATIVE[1] - 50, y), white, 1)
    cv2.putText(frame, str(depth), (NATIVE[1] - 44, y + 4), font, 0.35, white, 1, cv2.LINE_AA)


def render_cine(rng: np.random.Generator, ef: float, patient: str, k: int) -> tuple[np.ndarray, dict]:
  """One native-size cine (T, H, W, 3) uint8 RGB of a heart at ejection fraction ``ef``, and its facts."""
  params = echonet.sample_params(rng, min_frames=32)
  params.update(ef_target=float(ef), fps=float(rng.choice([30.0, 40.0, 50.0])))
  params["hr"] = float(rng.uniform(60, 100))
  period = params["fps"] * 60.0 / params["hr"]
  params["n_frames"] = int(min(max(32, math.ceil(2.2 * period)), 80))
  heart, _ = echonet.render_video(rng, params)
  n = len(heart)
  text = {"date": f"20{rng.integers(15, 25)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}",
          "mi": rng.uniform(0.8, 1.4), "tis": rng.uniform(0.2, 0.9)}
  ecg, _ = synthesize_ecg(n / params["fps"] + 2.0, 250.0, params["hr"], first_r_s=rng.uniform(0.1, 0.6), rng=rng)
  x0, x1 = 60, NATIVE[1] - 60
  xs = np.arange(x0, x1)
  span_s = 3.0  # the sweep crosses the band in 3 s
  out = np.zeros((n,) + NATIVE + (3,), np.uint8)
  green = (40, 210, 90)
  for t in range(n):
    f = out[t]
    big = cv2.resize(heart[t], (SECTOR_SIDE, SECTOR_SIDE), interpolation=cv2.INTER_CUBIC)
    x, y = SECTOR_XY
    f[y:y + SECTOR_SIDE, x:x + SECTOR_SIDE] = big[..., None]
    _overlay_text(f, patient, k, text)
    cv2.circle(f, (x + SECTOR_SIDE // 2 - 70, y + 8), 5, (60, 200, 255), -1)  # probe orientation marker
    now = t / params["fps"] + 1.0
    sweep = x0 + int(((now % span_s) / span_s) * (x1 - x0))
    times = now - ((sweep - xs) % (x1 - x0)) / (x1 - x0) * span_s  # what each column last drew
    vals = np.interp(times, np.arange(len(ecg)) / 250.0, ecg)
    ys = (ECG_BAND[0] + ECG_BAND[1]) // 2 - (vals * 14).astype(int)
    pts = np.stack([xs, ys], 1).astype(np.int32)
    keep = np.abs(xs - sweep) > 6  # the gap the sweep leaves
    for part in np.split(pts, np.nonzero(np.diff(keep.astype(int)))[0] + 1):
      if keep[part[0][0] - x0]:
        cv2.polylines(f, [part.reshape(-1, 1, 2)], False, green, 1, cv2.LINE_AA)
  return out, dict(hr_bpm=params["hr"], fps=params["fps"], frames=n)


def write_dicom(path: str | Path, frames: np.ndarray, fps: float, patient: str) -> None:
  """A multi-frame grey (MONOCHROME2) ultrasound DICOM, RLE Lossless (pydicom's own encoder), with CineRate and
  FrameTime; RGB frames are stored as their luma."""
  import pydicom
  from pydicom.dataset import FileMetaDataset
  from pydicom.uid import ExplicitVRLittleEndian, RLELossless, UltrasoundMultiFrameImageStorage, generate_uid

  frames = np.asarray(frames, np.uint8)
  if frames.ndim == 4:
    frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = pydicom.Dataset()
  ds.file_meta = meta
  ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
  ds.Modality, ds.PatientID = "US", patient
  ds.Rows, ds.Columns, ds.NumberOfFrames = int(frames.shape[1]), int(frames.shape[2]), int(frames.shape[0])
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
  ds.CineRate, ds.FrameTime = str(int(round(fps))), f"{1000.0 / fps:.4f}"
  ds.PixelData = np.ascontiguousarray(frames).tobytes()
  ds.compress(RLELossless, encoding_plugin="pydicom")
  ds.save_as(str(path), enforce_file_format=True)


def generate(out_dir: str | Path, num_patients: int = 34, seed: int = 0, *, progress: bool = True) -> Path:
  """Write a phantom cohort of ``num_patients`` under ``out_dir`` (layout: module docstring); returns it."""
  out = Path(out_dir)
  (out / "studies").mkdir(parents=True, exist_ok=True)
  labels, truth = [], []
  for i in tqdm(range(num_patients), desc="lvad phantoms", unit="patient", disable=not progress):
    rng = np.random.default_rng([seed, i])
    pid = f"lvad{i:03d}"
    ef = float(rng.uniform(*EF_RANGE))
    died = int(rng.random() < outcome_probability(ef))
    labels.append([pid, died, int(rng.integers(35, 78)), ("F", "M")[int(rng.random() < 0.75)],
                   int(rng.integers(1, 5))])
    folder = out / "studies" / pid
    folder.mkdir(exist_ok=True)
    for k in range(1 + int(rng.random() < 0.4)):
      cine, facts = render_cine(rng, ef + rng.normal(0, 1.5), pid, k)
      fmt = "dcm" if i % 4 == 3 else "avi"
      path = folder / f"a4c_{k + 1}.{fmt}"
      if fmt == "dcm":
        write_dicom(path, cine, facts["fps"], pid)
      else:
        write_avi(path, cine, facts["fps"])
      truth.append([pid, str(path.relative_to(out)), f"{ef:.2f}", f"{facts['hr_bpm']:.1f}", facts["fps"],
                    facts["frames"], fmt])
  for name, cols, rows in (("labels.csv", LABEL_COLUMNS, labels), ("phantom_truth.csv", TRUTH_COLUMNS, truth)):
    with open(out / name, "w", newline="") as f:
      w = csv.writer(f, lineterminator="\n")
      w.writerow(cols)
      w.writerows(rows)
  return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--num-patients", "--num", type=int, default=34, help="patients in the cohort (default 34)")


def generate_from_args(args: argparse.Namespace) -> Path:
  return generate(args.out, args.num_patients, args.seed)
