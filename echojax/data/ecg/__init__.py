"""ECG-assisted cardiac-phase sampling: R peaks, ECG/video alignment, ED/ES frames and phase-aware frame sampling.

Why: echo models that see a whole cardiac cycle (or K frames of systole and K of diastole) learn EF and views
better than models fed arbitrary clips. Most echo exports carry a synchronised ECG trace; when one is present we
use it to find end-diastole (ED, at each R peak) and end-systole (ES, at the end of the T wave); when none is
present we fall back to the periodic intensity cycle of the video, or to uniform sampling.

Pieces (all numpy; no JAX):

* :func:`detect_r_peaks` -- R peaks at any sampling rate (>= 50 Hz). For traces of 4 s or more: neurokit2
  (``nk.ecg_clean`` + ``nk.ecg_peaks``, method ``"neurokit"``); for shorter ones (echo clips) a scipy
  Pan-Tompkins-style detector, because neurokit2 drops beats near the ends of short traces. Either way followed
  by the Pan-Tompkins T-wave rule (a candidate within 360 ms of the previous beat whose QRS slope is under half
  of that beat's is a T wave, not an R peak). On LUDB record 1 both find every annotated QRS of all 12 leads
  within 75 ms with no false positives (tests/test_ecg.py).
* :func:`detect_r_peaks_multilead` -- a 12-lead record by voting across leads (a beat = detections in at least
  half of the leads within 75 ms), robust to a flat or noisy lead.
* :func:`frame_times` / :func:`times_to_frames` -- alignment by time: frame ``k`` is at ECG time
  ``offset_s + k / fps`` (``offset_s`` = ECG time of the first frame); an event at ECG time ``t`` maps to the
  nearest frame ``round((t - offset_s) * fps)``; events outside the video are dropped.
* :func:`ecg_phases` -- ED = the frame nearest each R peak. ES = R + QT, with QT from Bazett's formula
  ``QT = QTc * sqrt(RR)`` (``QTc`` = 0.40 s by default, RR in seconds; the end of the T wave marks the end of
  mechanical systole, i.e. aortic-valve closure, closely enough for frame sampling), or -- with
  ``es_method="delineate"`` -- the T-wave offset found by ``nk.ecg_delineate`` (wavelet method), falling back to
  Bazett for beats where delineation finds none.
* :func:`intensity_phases` -- no ECG: the mean grey level of a central region of each frame rises and falls
  with the cardiac cycle (the blood pool is dark, so the frame is darkest when the LV is largest). The smoothed,
  detrended signal's period comes from its autocorrelation; its minima are ED and its maxima ES.
* :func:`sample_phase_frames` -- K frames of systole (ED -> ES) then K of diastole (ES -> next ED) from one
  cycle: a fixed output length ``2K`` in time order, index 0 = ED and index K = ES, deterministic for a seed.
* :class:`PhaseFrameSampler` -- a callable ``(record dict, numpy Generator) -> int32 indices`` for the grain
  pipeline; uses stored ``r_peaks``, else the stored ECG, else the intensity cycle, else uniform sampling.
* :func:`read_ecg_file` / :func:`write_ecg_csv` -- the ECG file formats of the raw echo layouts (CSV
  ``time_s,ecg_mv`` or WFDB ``.hea/.dat``). The P-QRS-T generator for phantoms and tests is
  :func:`echojax.data.synthetic.ecg.synthesize_ecg`.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import signal as sps

from echojax.errors import UserError

DEFAULT_QTC_S = 0.40  # Bazett-corrected QT (s) of a healthy adult; ES = R + QTc * sqrt(RR)
T_WAVE_WINDOW_S = 0.36  # Pan-Tompkins: a candidate this close to the previous beat may be a T wave
REFRACTORY_S = 0.20  # no two QRS complexes closer than this
ECG_CSV_HEADER = "time_s,ecg_mv"
MIN_PERIOD_CORR = 0.3  # intensity cycle: autocorrelation a period must reach (phantoms: 0.87-0.98)
MIN_FS = 50.0  # Hz; below this a QRS complex spans too few samples to locate


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
      f.write(f"{ti:.6f},{vi:.5f}\n")


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
  return EcgTrace(vals[:, 1].astype(np.float32), 1.0 / step, float(vals[0, 0]))


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


# --------------------------------------------------------------------------------------------------------------
# R peaks


@dataclasses.dataclass(frozen=True)
class RPeaks:
  """R-peak sample indices (int64) of a trace sampled at ``fs``."""

  indices: np.ndarray
  fs: float

  @property
  def times(self) -> np.ndarray:
    """R-peak times in seconds from the first sample."""
    return self.indices / self.fs

  @property
  def rr_s(self) -> np.ndarray:
    return np.diff(self.indices) / self.fs

  @property
  def heart_rate_bpm(self) -> float:
    """60 / median RR; NaN with fewer than two peaks."""
    return float(60.0 / np.median(self.rr_s)) if len(self.indices) > 1 else float("nan")


def _as_lead(ecg: np.ndarray, fs: float) -> np.ndarray:
  """Validate a 1-D trace (or (N, 1)); fill NaNs by interpolation."""
  x = np.asarray(ecg, np.float64)
  if x.ndim == 2 and 1 in x.shape:
    x = x.reshape(-1)
  if x.ndim != 1:
    raise UserError(f"ECG must be one lead, shape (N,); got {x.shape} (pick a column, e.g. lead II)")
  if not fs or fs <= 0:
    raise UserError(f"ECG sampling rate must be > 0 Hz; got {fs}")
  if fs < MIN_FS:
    raise UserError(f"ECG sampled at {fs:g} Hz is too coarse to find R peaks (a QRS lasts ~0.1 s); need at least "
                    f"{MIN_FS:g} Hz")
  if len(x) == 0:
    raise UserError("ECG is empty (no samples)")
  bad = ~np.isfinite(x)
  if bad.all():
    raise UserError("ECG has no finite samples")
  if bad.any():
    idx = np.arange(len(x))
    x = x.copy()
    x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
  return x


def _bandpass(x: np.ndarray, fs: float, lo: float, hi: float, order: int = 2) -> np.ndarray:
  """Zero-phase Butterworth band-pass (upper edge kept under Nyquist)."""
  hi = min(hi, 0.45 * fs)
  sos = sps.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
  padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
  return sps.sosfiltfilt(sos, x, padlen=max(padlen, 0))


def clean_ecg(ecg: np.ndarray, fs: float) -> np.ndarray:
  """Baseline/noise removal: neurokit2's ``ecg_clean`` (0.5 Hz high-pass + 50 Hz powerline), scipy fallback."""
  x = _as_lead(ecg, fs)
  try:
    import neurokit2 as nk

    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      return np.asarray(nk.ecg_clean(x, sampling_rate=fs, method="neurokit"), np.float64)
  except Exception:  # very short traces: the filter's padding fails; a gentler band-pass does the same job
    return _bandpass(x, fs, 0.5, 40.0)


def _qrs_slope(x: np.ndarray, fs: float, peaks: np.ndarray) -> np.ndarray:
  """Max |slope| of the 5-15 Hz band-passed trace within +-60 ms of each peak (QRS steepness)."""
  bp = _bandpass(x, fs, 5.0, 15.0)
  d = np.abs(np.gradient(bp)) * fs
  w = max(1, int(0.06 * fs))
  return np.array([d[max(0, p - w) : p + w + 1].max() if len(d) else 0.0 for p in peaks])


def _reject_t_waves(x: np.ndarray, fs: float, peaks: np.ndarray) -> np.ndarray:
  """Pan-Tompkins rules: within 200 ms keep the steeper; within 360 ms drop one under half the previous slope."""
  if len(peaks) < 2:
    return peaks
  slope = _qrs_slope(x, fs, peaks)
  keep: list[int] = [0]
  for i in range(1, len(peaks)):
    j = keep[-1]
    gap = (peaks[i] - peaks[j]) / fs
    if gap < REFRACTORY_S:
      if slope[i] > slope[j]:
        keep[-1] = i
    elif gap < T_WAVE_WINDOW_S and slope[i] < 0.5 * slope[j]:
      continue
    else:
      keep.append(i)
  return peaks[keep]


def _pantompkins(x: np.ndarray, fs: float) -> np.ndarray:
  """Pan-Tompkins-style detector in scipy: 5-15 Hz band-pass, derivative, square, 150 ms integration,
  peaks of the integrated energy above 30% of its robust maximum (at least 200 ms apart), each moved to the
  largest |deflection| of the band-passed trace within +-75 ms."""
  bp = _bandpass(x, fs, 5.0, 15.0)
  energy = np.gradient(bp) ** 2
  win = max(1, int(0.15 * fs))
  integ = np.convolve(energy, np.ones(win) / win, mode="same")
  ref = np.percentile(integ, 99) if len(integ) > 100 else integ.max()
  cand, _ = sps.find_peaks(integ, height=0.3 * ref, distance=max(1, int(REFRACTORY_S * fs)))
  w = max(1, int(0.075 * fs))
  ref_sig = x - np.median(x)
  out = [max(0, c - w) + int(np.argmax(np.abs(ref_sig[max(0, c - w) : c + w + 1]))) for c in cand]
  return np.unique(np.asarray(out, np.int64))


AUTO_NEUROKIT_MIN_S = 4.0  # neurokit2's smoothing windows drop beats near the ends of short traces


def detect_r_peaks(
    ecg: np.ndarray, fs: float, *, method: str = "auto", reject_t_waves: bool = True
) -> RPeaks:
  """R peaks of one ECG lead at any sampling rate (tested at 100, 500 and 1000 Hz).

  Args:
    ecg: (N,) trace in any unit (mV typical).
    fs: sampling rate in Hz.
    method: ``"neurokit"`` (neurokit2 ecg_clean + ecg_peaks), ``"pantompkins"`` (scipy only), or ``"auto"``
      (default): neurokit for traces of at least 4 s, Pan-Tompkins for shorter ones -- echo clips are often
      1-3 s and neurokit misses the beat in the first ~0.3 s of such a trace. Both score 100% on LUDB record 1
      (all 12 leads). Falls back to ``"pantompkins"`` when neurokit2 fails.
    reject_t_waves: apply the Pan-Tompkins T-wave / refractory rules after detection (removes tall T waves
      picked as beats, e.g. in V2).
  """
  x = _as_lead(ecg, fs)
  if method not in ("auto", "neurokit", "pantompkins"):
    raise UserError(f"unknown R-peak method {method!r}; use 'auto', 'neurokit' or 'pantompkins'")
  if method == "auto":
    method = "neurokit" if len(x) >= AUTO_NEUROKIT_MIN_S * fs else "pantompkins"
  # neurokit2 takes seconds to import: the scipy path (short traces) never touches it
  cleaned = clean_ecg(x, fs) if method == "neurokit" else _bandpass(x, fs, 0.5, 40.0)
  peaks = None
  if method == "neurokit":
    try:
      import neurokit2 as nk

      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit")
      peaks = np.asarray(info["ECG_R_Peaks"], np.int64)
    except Exception:
      peaks = None
  if peaks is None or (len(peaks) == 0 and len(x) > 0.5 * fs):
    peaks = _pantompkins(cleaned, fs)
  peaks = np.unique(peaks[(peaks >= 0) & (peaks < len(x))])
  if reject_t_waves:
    peaks = _reject_t_waves(cleaned, fs, peaks)
  return RPeaks(peaks.astype(np.int64), float(fs))


def detect_r_peaks_multilead(ecg: np.ndarray, fs: float, *, method: str = "auto", tol_s: float = 0.075,
                             min_fraction: float = 0.5) -> RPeaks:
  """R peaks of a multi-lead record (N, L) by voting: each lead is detected alone, detections of different leads
  within ``tol_s`` of each other are grouped, and a group found in at least ``min_fraction`` of the leads is a
  beat, placed at the median of its members. Survives a lead that is flat, noisy or has tall T waves."""
  x = np.asarray(ecg, np.float64)
  if x.ndim == 1:
    return detect_r_peaks(x, fs, method=method)
  if x.ndim != 2:
    raise UserError(f"multi-lead ECG must be (N, leads); got shape {x.shape}")
  per_lead = [detect_r_peaks(x[:, i], fs, method=method).indices for i in range(x.shape[1])]
  peaks = np.concatenate(per_lead + [np.zeros(0, np.int64)])
  lead = np.concatenate([np.full(len(p), i) for i, p in enumerate(per_lead)] + [np.zeros(0, np.int64)])
  order = np.argsort(peaks, kind="stable")
  peaks, lead = peaks[order], lead[order]
  tol = tol_s * fs
  # chain detections closer than tol (beats are >= 200 ms apart, so a chain is one beat)
  starts = np.flatnonzero(np.diff(peaks, prepend=-np.inf) > tol)
  beats, support = [], []
  for g0, g1 in zip(starts, np.append(starts[1:], len(peaks))):
    beats.append(int(np.median(peaks[g0:g1])))
    support.append(len(set(lead[g0:g1].tolist())))
  keep = [b for b, n in zip(beats, support) if n >= min_fraction * x.shape[1]]
  return RPeaks(np.asarray(keep, np.int64), float(fs))


def t_wave_ends(ecg: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
  """T-wave offsets (sample index, NaN where none) per R peak, via ``nk.ecg_delineate`` (wavelet method)."""
  out = np.full(len(r_peaks), np.nan)
  if len(r_peaks) == 0:
    return out
  try:
    import neurokit2 as nk

    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      _, waves = nk.ecg_delineate(clean_ecg(ecg, fs), np.asarray(r_peaks), sampling_rate=fs, method="dwt")
    offs = np.asarray(waves.get("ECG_T_Offsets", []), np.float64)
  except Exception:
    return out
  # neurokit returns one value per R peak (NaN where it found none); keep only offsets after their own R
  if len(offs) == len(r_peaks):
    nxt = np.append(np.asarray(r_peaks[1:], np.float64), np.inf)
    ok = (offs > r_peaks) & (offs < nxt)
    out[ok] = offs[ok]
  return out


# --------------------------------------------------------------------------------------------------------------
# Alignment and phases


def frame_times(num_frames: int, fps: float, offset_s: float = 0.0) -> np.ndarray:
  """ECG-clock time (s) of each video frame: ``offset_s + k / fps``."""
  if fps <= 0:
    raise UserError(f"video fps must be > 0 to align an ECG; got {fps}")
  return offset_s + np.arange(num_frames) / float(fps)


def times_to_frames(times_s: np.ndarray, fps: float, num_frames: int, offset_s: float = 0.0) -> np.ndarray:
  """Nearest frame index (int64) of each ECG-clock time; times outside the video are dropped."""
  if fps <= 0:
    raise UserError(f"video fps must be > 0 to align an ECG; got {fps}")
  idx = np.round((np.asarray(times_s, np.float64) - offset_s) * fps).astype(np.int64)
  return idx[(idx >= 0) & (idx < num_frames)]


def bazett_es_times(r_times_s: np.ndarray, qtc_s: float = DEFAULT_QTC_S) -> np.ndarray:
  """ES time after each R peak: ``R + QTc * sqrt(RR)``; RR of the last beat = median RR (1 s when unknown)."""
  r = np.asarray(r_times_s, np.float64)
  if len(r) == 0:
    return r
  rr = np.diff(r)
  med = float(np.median(rr)) if len(rr) else 1.0
  rr = np.append(rr, med)
  return r + qtc_s * np.sqrt(rr)


@dataclasses.dataclass(frozen=True)
class CardiacPhases:
  """ED and ES frame indices (each sorted, int64) and where they came from."""

  ed_frames: np.ndarray
  es_frames: np.ndarray
  source: str  # "ecg", "ecg+delineation", "r_peaks", "intensity", "none"
  period_frames: float = float("nan")  # cycle length in frames when known

  def cycles(self, num_frames: int) -> list[tuple[int, int, int]]:
    """Complete cycles (ED, ES, next ED) inside the video, in time order."""
    ed, es = np.sort(self.ed_frames), np.sort(self.es_frames)
    out = []
    for i in range(len(ed) - 1):
      s = es[(es > ed[i]) & (es < ed[i + 1])]
      if len(s) and ed[i + 1] < num_frames:
        out.append((int(ed[i]), int(s[0]), int(ed[i + 1])))
    return out


def ecg_phases(
    ecg: np.ndarray,
    ecg_fs: float,
    num_frames: int,
    fps: float,
    *,
    offset_s: float = 0.0,
    es_method: str = "bazett",
    qtc_s: float = DEFAULT_QTC_S,
    r_peaks: RPeaks | None = None,
) -> CardiacPhases:
  """ED/ES frames of a video from its synchronised ECG (see module docstring for the rules).

  ``offset_s`` is the ECG time of the video's first frame. ``es_method``: ``"bazett"`` or ``"delineate"``.
  """
  if es_method not in ("bazett", "delineate"):
    raise UserError(f"unknown es_method {es_method!r}; use 'bazett' or 'delineate'")
  rp = r_peaks if r_peaks is not None else detect_r_peaks(ecg, ecg_fs)
  r_t = rp.times
  es_t = bazett_es_times(r_t, qtc_s)
  source = "ecg"
  if es_method == "delineate" and len(r_t):
    toff = t_wave_ends(ecg, ecg_fs, rp.indices)
    ok = np.isfinite(toff)
    es_t = np.where(ok, toff / ecg_fs, es_t)
    source = "ecg+delineation"
  period = float(np.median(np.diff(r_t)) * fps) if len(r_t) > 1 else float("nan")
  return CardiacPhases(
      np.unique(times_to_frames(r_t, fps, num_frames, offset_s)),
      np.unique(times_to_frames(es_t, fps, num_frames, offset_s)),
      source,
      period,
  )


def phases_from_r_peak_frames(
    r_peak_frames: np.ndarray, num_frames: int, fps: float, qtc_s: float = DEFAULT_QTC_S
) -> CardiacPhases:
  """ED/ES frames from stored ED (R-peak) frame indices; ES by Bazett with RR measured in frames / fps."""
  ed = np.unique(np.asarray(r_peak_frames, np.int64))
  ed = ed[(ed >= 0) & (ed < num_frames)]
  if len(ed) == 0 or fps <= 0:
    return CardiacPhases(ed, np.zeros(0, np.int64), "r_peaks")
  es_t = bazett_es_times(ed / float(fps), qtc_s)
  period = float(np.median(np.diff(ed))) if len(ed) > 1 else float("nan")
  return CardiacPhases(ed, np.unique(times_to_frames(es_t, fps, num_frames)), "r_peaks", period)


def intensity_signal(frames: np.ndarray, center_frac: float = 0.5) -> np.ndarray:
  """Mean grey level (float64 (T,)) of the central ``center_frac`` x ``center_frac`` region of each frame."""
  f = np.asarray(frames)
  if f.ndim == 4:
    f = f.mean(-1)
  if f.ndim != 3:
    raise UserError(f"frames must be (T, H, W) or (T, H, W, C); got {np.asarray(frames).shape}")
  _, h, w = f.shape
  dh, dw = int(h * (1 - center_frac) / 2), int(w * (1 - center_frac) / 2)
  return f[:, dh : h - dh, dw : w - dw].reshape(len(f), -1).mean(1).astype(np.float64)


def _estimate_period(s: np.ndarray, min_lag: int) -> float:
  """Period (frames) = lag of the first dominant autocorrelation peak after its first zero crossing, within the
  first two thirds of the signal and correlated at least MIN_PERIOD_CORR; NaN if none."""
  n = len(s)
  if n < 2 * min_lag + 1 or not np.any(s):
    return float("nan")
  ac = np.correlate(s, s, mode="full")[n - 1 :]
  ac = ac / (ac[0] + 1e-12) * n / np.maximum(n - np.arange(n), 1)  # unbiased: long lags are not penalised
  zero = np.where(ac < 0)[0]
  if len(zero) == 0:
    return float("nan")
  hi = max(zero[0] + 1, int(0.67 * n))  # need at least ~1.5 cycles of overlap to trust a lag
  pk, _ = sps.find_peaks(ac[: hi + 1])
  pk = pk[(pk > zero[0]) & (pk >= min_lag) & (ac[pk] >= MIN_PERIOD_CORR)]
  if len(pk) == 0:
    return float("nan")
  # the shortest lag whose peak is nearly as high as the best one (multiples of the period peak as high)
  p = int(pk[np.argmax(ac[pk] >= 0.8 * ac[pk].max())])
  if 0 < p < len(ac) - 1:  # parabolic interpolation for a sub-frame period
    a, b, c = ac[p - 1], ac[p], ac[p + 1]
    den = a - 2 * b + c
    return float(p + (0.5 * (a - c) / den if den != 0 else 0.0))
  return float(p)


def intensity_phases(
    frames: np.ndarray, *, center_frac: float = 0.5, min_period_frames: int = 4, smooth_sigma: float = 1.0
) -> CardiacPhases:
  """ED/ES from the video alone: minima (ED) and maxima (ES) of the smoothed central mean intensity.

  The signal is detrended (linear), smoothed with a Gaussian of ``smooth_sigma`` frames, its period estimated by
  autocorrelation; extrema closer than 0.6 periods are merged. Empty phases when no period is found.
  """
  from scipy.ndimage import gaussian_filter1d

  s = intensity_signal(frames, center_frac)
  t = np.arange(len(s))
  if len(s) >= 2:
    s = s - np.polyval(np.polyfit(t, s, 1), t)
  if smooth_sigma > 0 and len(s) > 2:
    s = gaussian_filter1d(s, smooth_sigma, mode="nearest")
  period = _estimate_period(s, min_period_frames)
  empty = np.zeros(0, np.int64)
  if not np.isfinite(period):
    return CardiacPhases(empty, empty, "none")
  dist = max(1, int(0.6 * period))
  prom = 0.2 * (np.percentile(s, 95) - np.percentile(s, 5))
  ed, _ = sps.find_peaks(-s, distance=dist, prominence=prom)
  es, _ = sps.find_peaks(s, distance=dist, prominence=prom)
  return CardiacPhases(ed.astype(np.int64), es.astype(np.int64), "intensity", period)


# --------------------------------------------------------------------------------------------------------------
# Sampling


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator | None:
  if rng is None or isinstance(rng, np.random.Generator):
    return rng
  return np.random.default_rng(rng)


def uniform_frames(num_frames: int, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
  """``n`` frame indices (int32, non-decreasing) spread evenly over the video; ``rng`` jitters within bins."""
  if num_frames <= 0:
    raise UserError("cannot sample frames from a video with no frames")
  rng = _as_rng(rng)
  u = rng.uniform(0, 1, n) if rng is not None else np.full(n, 0.5)
  pos = (np.arange(n) + u) * num_frames / n
  return np.clip(np.floor(pos), 0, num_frames - 1).astype(np.int32)


def _phase_points(a: int, b: int, k: int, rng: np.random.Generator | None) -> np.ndarray:
  """k positions from a (included) towards b (excluded); interior points jittered within their bins by rng."""
  j = np.arange(k, dtype=np.float64)
  if rng is not None and k > 1:
    j[1:] += rng.uniform(-0.5, 0.5, k - 1)
  return a + (b - a) * j / k


def sample_phase_frames(
    phases: CardiacPhases,
    num_frames: int,
    k_per_phase: int,
    rng: np.random.Generator | int | None = None,
    *,
    random_cycle: bool = True,
) -> np.ndarray:
  """K frames of systole (ED -> ES) then K of diastole (ES -> next ED) from one cardiac cycle.

  Returns int32 (2K,) non-decreasing frame indices: index 0 is ED, index K is ES (repeats when a phase has fewer
  than K frames). With ``rng`` (a Generator or an int seed) the cycle is chosen at random (``random_cycle``) and
  interior points are jittered -- deterministic for a seed; without it the first cycle, evenly spaced. With no
  complete cycle in the video: uniform sampling over the whole video (same length).
  """
  if k_per_phase < 1:
    raise UserError(f"k_per_phase must be >= 1; got {k_per_phase}")
  rng = _as_rng(rng)
  cycles = phases.cycles(num_frames)
  if not cycles:
    return uniform_frames(num_frames, 2 * k_per_phase, rng)
  c = cycles[int(rng.integers(len(cycles)))] if (rng is not None and random_cycle) else cycles[0]
  ed, es, nxt = c
  pos = np.concatenate([_phase_points(ed, es, k_per_phase, rng), _phase_points(es, nxt, k_per_phase, rng)])
  idx = np.clip(np.round(pos), 0, num_frames - 1).astype(np.int32)
  return np.maximum.accumulate(idx)


def record_phases(record: Mapping[str, Any], *, source: str = "auto", es_method: str = "bazett",
                  qtc_s: float = DEFAULT_QTC_S) -> CardiacPhases:
  """Cardiac phases of a dataset record (keys of the ``echo_views`` videos config / EchoNet records).

  ``source``: ``"auto"`` (stored ``r_peaks`` -> stored ``ecg`` + ``ecg_fs`` -> intensity of ``video``),
  ``"r_peaks"``, ``"ecg"``, ``"intensity"`` or ``"uniform"`` (no phases).
  """
  if source not in ("auto", "r_peaks", "ecg", "intensity", "uniform"):
    raise UserError(f"unknown phase source {source!r}; use auto, r_peaks, ecg, intensity or uniform")
  video = record.get("video")
  num_frames = int(record["num_frames"]) if "num_frames" in record else len(video)
  fps = float(record.get("fps", 0.0) or 0.0)
  empty = CardiacPhases(np.zeros(0, np.int64), np.zeros(0, np.int64), "none")
  if source == "uniform":
    return empty
  r = record.get("r_peaks")
  if source in ("auto", "r_peaks") and r is not None and len(r) > 0 and fps > 0:
    return phases_from_r_peak_frames(np.asarray(r), num_frames, fps, qtc_s)
  ecg, ecg_fs = record.get("ecg"), float(record.get("ecg_fs", 0.0) or 0.0)
  if source in ("auto", "ecg") and ecg is not None and len(ecg) > 0 and ecg_fs > 0 and fps > 0:
    return ecg_phases(np.asarray(ecg), ecg_fs, num_frames, fps, es_method=es_method, qtc_s=qtc_s)
  if source in ("auto", "intensity") and video is not None:
    return intensity_phases(np.asarray(video))
  return empty


class PhaseFrameSampler:
  """Frame-index sampler for the grain pipeline: ``sampler(record, rng) -> int32 (2K,)`` frame indices.

  ``record`` is a decoded dataset record (needs ``video`` or ``num_frames``; uses ``fps``, ``r_peaks``,
  ``ecg``/``ecg_fs`` when present); ``rng`` a numpy Generator (pass None in eval for the first cycle, evenly
  spaced). Output length is always ``2 * k_per_phase``, so batches keep a fixed shape.
  """

  def __init__(self, k_per_phase: int = 8, *, source: str = "auto", es_method: str = "bazett",
               qtc_s: float = DEFAULT_QTC_S, random_cycle: bool = True):
    if k_per_phase < 1:
      raise UserError(f"k_per_phase must be >= 1; got {k_per_phase}")
    self.k_per_phase = k_per_phase
    self.source = source
    self.es_method = es_method
    self.qtc_s = qtc_s
    self.random_cycle = random_cycle

  @property
  def num_frames_out(self) -> int:
    return 2 * self.k_per_phase

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
    num_frames = int(record["num_frames"]) if "num_frames" in record else len(record["video"])
    phases = record_phases(record, source=self.source, es_method=self.es_method, qtc_s=self.qtc_s)
    return sample_phase_frames(phases, num_frames, self.k_per_phase, rng, random_cycle=self.random_cycle)


def register_phase_samplers() -> None:
  """Register ``ecg_phases_<N>`` frame samplers (N = 4, 8, 16, 32 frames = N/2 per phase) with the grain
  pipeline, so a data config can say ``frame_sampler="ecg_phases_16"`` (with ``frames=16``)."""
  from echojax.data import pipeline

  for n in (4, 8, 16, 32):
    pipeline.register_frame_sampler(f"ecg_phases_{n}", PhaseFrameSampler(n // 2))
