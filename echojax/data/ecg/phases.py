"""Cardiac phases: ED and ES frames of a video from its ECG (R peaks, Bazett or T-wave end) or intensity cycle.

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
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal as sps

from echojax.data.ecg.detect import RPeaks, detect_r_peaks, t_wave_ends
from echojax.errors import UserError

DEFAULT_QTC_S = 0.40  # Bazett-corrected QT (s) of a healthy adult; ES = R + QTc * sqrt(RR)
MIN_PERIOD_CORR = 0.3  # intensity cycle: autocorrelation a period must reach (phantoms: 0.87-0.98)


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
