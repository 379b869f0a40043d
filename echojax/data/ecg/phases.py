"""Cardiac phases: ED and ES frames of a video from its ECG (R peaks, Bazett or T-wave end) or intensity cycle.

* :func:`frame_times` / :func:`times_to_frames` -- alignment by time: frame ``k`` is at ECG time
  ``offset_s + k / fps`` (``offset_s`` = ECG time of the first frame); an event at ECG time ``t`` maps to the
  nearest frame ``round((t - offset_s) * fps)``; events outside the video are dropped.
* :func:`ecg_phases` -- ED = the frame nearest each R peak. ES = R + QT, with QT from Bazett's formula
  ``QT = QTc * sqrt(RR)`` (``QTc`` = 0.40 s by default, RR in seconds; the end of the T wave marks the end of
  mechanical systole, i.e. aortic-valve closure, closely enough for frame sampling). On LUDB record 1 it lands within
  80 ms of the annotated T-wave end on every lead and within 40 ms of their median (tests/test_ecg.py); at 60-100
  bpm it is 310-400 ms after R. (A wavelet delineation of the T-wave end was offered before and put ES 90-270 ms
  after R on normal sinus rhythm, inside the T wave: it was removed.)
* :func:`plausible_cycles` -- which cycles (R to next R) can be sampled: RR inside :data:`RR_RANGE_S` (30-220 bpm),
  within :data:`RR_NEIGHBOUR_RATIO` of the median of its neighbours (two cycles either side: a missed beat doubles
  an RR, an extra beat halves it), and
  ECG usable over at least :data:`MIN_USABLE_FRACTION` of it. :class:`CardiacPhases` keeps only those and the reason
  when none is left.
* :func:`intensity_phases` -- no ECG: the mean grey level of a central region of each frame rises and falls
  with the cardiac cycle (the blood pool is dark, so the frame is darkest when the LV is largest). The smoothed,
  detrended signal's period comes from its autocorrelation; its minima are ED and its maxima ES.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal as sps

from echojax.data.ecg.detect import RPeaks, detect_r_peaks
from echojax.errors import UserError

DEFAULT_QTC_S = 0.40  # Bazett-corrected QT (s) of a healthy adult; ES = R + QTc * sqrt(RR)
RR_RANGE_S = (60.0 / 220.0, 60.0 / 30.0)  # a cycle's RR must be inside this (220 to 30 bpm)
RR_NEIGHBOUR_RATIO = 1.5  # and within this factor of its neighbours' median RR (a missed beat gives 2, an extra 0.5)
MIN_USABLE_FRACTION = 0.7  # and the ECG usable over this much of it
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


def _neighbour_median(rr: np.ndarray, ref: np.ndarray, k: int = 2) -> np.ndarray:
  """Per RR: the median of the in-range RRs (``ref``, NaN where out of range) up to ``k`` cycles either side, itself
  excluded (NaN when there are none), so one missed beat does not condemn the cycles next to it."""
  out = np.full(len(rr), np.nan)
  for i in range(len(rr)):
    nb = np.concatenate([ref[max(0, i - k) : i], ref[i + 1 : i + 1 + k]])
    nb = nb[np.isfinite(nb)]
    if len(nb):
      out[i] = np.median(nb)
  return out


def plausible_cycles(r_times_s: np.ndarray, usable: np.ndarray | None = None,
                     fs: float = 0.0) -> tuple[np.ndarray, str]:
  """Which cycles ``[r_i, r_{i+1})`` are plausible (module docstring): bool (len(r) - 1,), and why the others are
  not (``""`` when all are). ``usable``: the ECG's per-sample usable mask at rate ``fs`` (None: not checked)."""
  r = np.asarray(r_times_s, np.float64)
  rr = np.diff(r)
  if len(rr) == 0:
    return np.zeros(0, bool), ("no R peaks" if len(r) == 0 else "one R peak: no complete cycle")
  lo, hi = RR_RANGE_S
  in_range = (rr >= lo) & (rr <= hi)
  # each RR against the median of its in-range neighbours
  nb = _neighbour_median(rr, np.where(in_range, rr, np.nan))
  regular = ~np.isfinite(nb) | ((rr <= RR_NEIGHBOUR_RATIO * nb) & (nb <= RR_NEIGHBOUR_RATIO * rr))
  ok = in_range & regular
  covered = np.ones(len(rr), bool)
  if usable is not None and fs > 0 and len(usable):
    idx = np.clip(np.round(r * fs).astype(np.int64), 0, len(usable))
    csum = np.concatenate([[0], np.cumsum(usable)])
    frac = (csum[idx[1:]] - csum[idx[:-1]]) / np.maximum(idx[1:] - idx[:-1], 1)
    covered = frac >= MIN_USABLE_FRACTION
    ok &= covered
  why = []
  if (~in_range).any():
    bad = rr[~in_range]
    hint = " (is the ECG sampling rate right?)" if (~in_range).mean() > 0.5 else ""
    why.append(f"{len(bad)} RR outside {lo:.2f}-{hi:.2f} s (30-220 bpm): {', '.join(f'{v:.2f}' for v in bad[:3])} s"
               + hint)
  if (in_range & ~regular).any():
    why.append(f"{int((in_range & ~regular).sum())} RR more than {RR_NEIGHBOUR_RATIO}x off a neighbour (a missed or "
               "extra beat)")
  if (~covered).any():
    why.append(f"{int((~covered).sum())} cycles on unusable ECG (flat, saturated, noise or lead-off)")
  return ok, "; ".join(why)


@dataclasses.dataclass(frozen=True)
class CardiacPhases:
  """ED and ES frame indices (each sorted, int64), where they came from, and which cycles may be sampled.

  ``good_cycles[i]`` says whether the cycle starting at ``ed_frames[i]`` is plausible (None: all are); ``reason``
  says why a source gave no usable cycle, or which cycles it dropped.
  """

  ed_frames: np.ndarray
  es_frames: np.ndarray
  source: str  # "ecg", "r_peaks", "intensity", "none"
  period_frames: float = float("nan")  # cycle length in frames when known
  good_cycles: np.ndarray | None = None
  reason: str = ""

  def cycles(self, num_frames: int) -> list[tuple[int, int, int]]:
    """Complete, plausible cycles (ED, ES, next ED) inside the video, in time order."""
    ed, es = np.sort(self.ed_frames), np.sort(self.es_frames)
    out = []
    for i in range(len(ed) - 1):
      if self.good_cycles is not None and not (i < len(self.good_cycles) and self.good_cycles[i]):
        continue
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
    qtc_s: float = DEFAULT_QTC_S,
    r_peaks: RPeaks | None = None,
) -> CardiacPhases:
  """ED/ES frames of a video from its synchronised ECG (see module docstring for the rules); only plausible
  cycles on usable ECG are kept. ``offset_s`` is the ECG time of the video's first frame."""
  rp = r_peaks if r_peaks is not None else detect_r_peaks(ecg, ecg_fs)
  r_t = rp.times
  es_t = bazett_es_times(r_t, qtc_s)
  good, why = plausible_cycles(r_t, rp.quality.usable if rp.quality is not None else None, rp.fs)
  # keep the R peaks inside the video and the plausibility of the cycles that start at them
  idx = np.round((r_t - offset_s) * fps).astype(np.int64)
  inside = (idx >= 0) & (idx < num_frames)
  ed, first = np.unique(idx[inside], return_index=True)
  good_in = np.append(good, False)[np.flatnonzero(inside)][first]
  period = float(np.median(np.diff(r_t)[good]) * fps) if good.any() else float("nan")
  if not good.any() and len(r_t) > 1 and rp.quality is not None:
    why = f"{why} (ECG quality: {rp.quality.summary()})"
  return CardiacPhases(ed, np.unique(times_to_frames(es_t, fps, num_frames, offset_s)), "ecg", period, good_in, why)


def phases_from_r_peak_frames(
    r_peak_frames: np.ndarray, num_frames: int, fps: float, qtc_s: float = DEFAULT_QTC_S
) -> CardiacPhases:
  """ED/ES frames from stored ED (R-peak) frame indices; ES by Bazett with RR measured in frames / fps; cycles
  checked for plausible RR (the stored peaks carry no ECG quality)."""
  ed = np.unique(np.asarray(r_peak_frames, np.int64))
  ed = ed[(ed >= 0) & (ed < num_frames)]
  if len(ed) == 0 or fps <= 0:
    return CardiacPhases(ed, np.zeros(0, np.int64), "r_peaks", reason="no R peaks inside the video")
  good, why = plausible_cycles(ed / float(fps))
  es_t = bazett_es_times(ed / float(fps), qtc_s)
  period = float(np.median(np.diff(ed)[good])) if good.any() else float("nan")
  return CardiacPhases(ed, np.unique(times_to_frames(es_t, fps, num_frames)), "r_peaks", period, good, why)


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
