"""ECG files of the raw echo layouts: reading, writing, alignment to the video clock, finding one beside a cine.

* :func:`read_ecg_file` / :func:`write_ecg_csv` -- the ECG file formats of the raw echo layouts (CSV
  ``time_s,ecg_mv`` or WFDB ``.hea/.dat``).
* :func:`align_to_video` -- shift, edge-pad (at most ``tol_s``) and cut a trace so that sample 0 is at the cine's
  first frame; a reason instead when it does not cover the cine.
* :func:`find_ecg_file` -- ``<stem>.csv`` or ``<stem>.hea`` beside a video.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

ECG_CSV_HEADER = "time_s,ecg_mv"


# --------------------------------------------------------------------------------------------------------------
# ECG files


class EcgReadError(Exception):
  """An ECG file could not be read or parsed; the message says why (file, line, field)."""


@dataclasses.dataclass(frozen=True)
class EcgTrace:
  """One ECG lead: ``signal`` float32 (N,) in mV, sampled at ``fs`` Hz; its first sample is at ``start_s`` on the
  video clock (0 = the first frame; a CSV whose ``time_s`` starts at -0.5 began recording half a second early)."""

  signal: np.ndarray
  fs: float
  start_s: float = 0.0

  @property
  def duration_s(self) -> float:
    return len(self.signal) / self.fs


def write_ecg_csv(path: str | Path, ecg: np.ndarray, fs: float, start_s: float = 0.0) -> None:
  """Write one lead as the documented CSV: header ``time_s,ecg_mv``, then one ``time,value`` row per sample
  (``time_s`` on the video clock: 0 = first frame; ``start_s`` = time of the first sample)."""
  ecg = np.asarray(ecg, np.float64).reshape(-1)
  t = start_s + np.arange(len(ecg)) / float(fs)
  with open(path, "w") as f:
    f.write(ECG_CSV_HEADER + "\n")
    for ti, vi in zip(t, ecg):
      f.write(f"{ti:.9f},{vi:.5f}\n")


def _read_ecg_csv(path: Path) -> EcgTrace:
  """Parse the ``time_s,ecg_mv`` CSV; sampling rate = 1 / the (uniform) time step."""
  try:
    lines = path.read_text().strip().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise EcgReadError(f"cannot read ECG CSV: {e}") from e
  if not lines:
    raise EcgReadError("ECG CSV is empty (expected a header 'time_s,ecg_mv' and one row per sample)")
  header = [h.strip().lower() for h in lines[0].split(",")]
  if header != ["time_s", "ecg_mv"]:
    raise EcgReadError(f"ECG CSV header is {lines[0]!r}; expected 'time_s,ecg_mv'")
  if len(lines) < 3:
    raise EcgReadError("ECG CSV has fewer than 2 samples")
  vals = np.empty((len(lines) - 1, 2))
  for i, line in enumerate(lines[1:], start=1):
    parts = line.split(",")
    try:
      if len(parts) != 2:
        raise ValueError(f"{len(parts)} fields")
      vals[i - 1] = float(parts[0]), float(parts[1])
    except ValueError:
      raise EcgReadError(f"ECG CSV row {i} is {line.strip()!r}; expected two numbers 'time_s,ecg_mv'") from None
  if not np.all(np.isfinite(vals)):
    row = int(np.where(~np.isfinite(vals).all(1))[0][0]) + 1
    raise EcgReadError(f"ECG CSV row {row} has a non-finite value")
  dt = np.diff(vals[:, 0])
  if np.any(dt <= 0):
    row = int(np.where(dt <= 0)[0][0]) + 2
    raise EcgReadError(f"ECG CSV time_s is not strictly increasing at row {row}")
  step = float(np.median(dt))
  if np.max(np.abs(dt - step)) > 0.05 * step + 2e-6:
    raise EcgReadError("ECG CSV time_s is not uniformly spaced (resample to a fixed rate)")
  # the rate from the whole span, not the median step: a rounded time column (6 decimals at 360 Hz) gives
  # 359.97 Hz from single steps and 360.0000 Hz over the record
  fs = (len(vals) - 1) / float(vals[-1, 0] - vals[0, 0])
  return EcgTrace(vals[:, 1].astype(np.float32), fs, float(vals[0, 0]))


def _read_ecg_wfdb(path: Path) -> EcgTrace:
  """Read a WFDB record (``.hea`` + data); lead II if present, else the first channel."""
  import wfdb

  stem = path.with_suffix("")
  try:
    rec = wfdb.rdrecord(str(stem))
  except Exception as e:  # wfdb raises many types on malformed headers / data
    raise EcgReadError(f"cannot read WFDB record: {type(e).__name__}: {e}") from e
  if rec.p_signal is None or rec.p_signal.size == 0:
    raise EcgReadError("WFDB record has no samples")
  names = [str(n).strip().lower() for n in (rec.sig_name or [])]
  ch = names.index("ii") if "ii" in names else 0
  sig = np.asarray(rec.p_signal[:, ch], np.float64)
  if not np.all(np.isfinite(sig)):
    raise EcgReadError("WFDB record has non-finite samples")
  return EcgTrace(sig.astype(np.float32), float(rec.fs))


def read_ecg_file(path: str | Path) -> EcgTrace:
  """Read an ECG file of the raw echo layouts: ``.csv`` (``time_s,ecg_mv``) or WFDB ``.hea`` (+ ``.dat``).

  Raises EcgReadError naming the problem.
  """
  path = Path(path)
  if not path.exists():
    raise EcgReadError("file not found")
  if path.suffix.lower() == ".csv":
    return _read_ecg_csv(path)
  if path.suffix.lower() in (".hea", ".dat"):
    return _read_ecg_wfdb(path)
  raise EcgReadError(f"unknown ECG file type {path.suffix!r} (use .csv 'time_s,ecg_mv' or WFDB .hea/.dat)")


def align_to_video(trace: EcgTrace, num_frames: int, fps: float, tol_s: float) -> tuple[np.ndarray, str | None]:
  """Shift an ECG so that its sample 0 is at the cine's first frame (cutting samples recorded before it, or
  edge-padding by at most ``tol_s``), and cut what runs more than ``tol_s`` past the cine's end.

  Returns (signal, None), or (empty, reason) when the ECG does not cover [0, num_frames / fps) to within
  ``tol_s`` at either end. A trace that starts at 0 and ends within ``tol_s`` of the cine is returned unchanged.
  """
  video_s = num_frames / fps
  end_s = trace.start_s + trace.duration_s
  if trace.start_s > tol_s or end_s < video_s - tol_s:
    return np.zeros(0, np.float32), (
        f"covers {trace.start_s:.2f} to {end_s:.2f} s but the video lasts {video_s:.2f} s ({num_frames} frames at "
        f"{fps:g} fps); the ECG must cover the cine (time_s 0 = first frame)")
  n = len(trace.signal)
  first = int(round(-trace.start_s * trace.fs))  # index of the sample at the first frame (< 0: pad)
  last = first + int(round(video_s * trace.fs)) if end_s - video_s > tol_s else n
  idx = np.clip(np.arange(first, last), 0, n - 1)
  return trace.signal[idx].astype(np.float32), None


def find_ecg_file(video_path: str | Path) -> Path | None:
  """The ECG beside a video (same stem): ``<stem>.csv`` or ``<stem>.hea``; None when there is none."""
  video_path = Path(video_path)
  for ext in (".csv", ".hea"):
    p = video_path.with_suffix(ext)
    if p.exists():
      return p
  return None
