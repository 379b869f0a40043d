"""R peaks of an ECG: one lead (any polarity, any length, quality-gated) and multi-lead fusion.

All numpy/scipy; neurokit2 and wfdb are imported only by the anchor methods that use them.

* :func:`detect_r_peaks` -- R peaks of one lead. The default method (``"auto"``) is written here because none of the
  maintained detectors does all of it (``benchmarks/ecg_rpeaks.py`` scores it beside neurokit2, wfdb's XQRS and
  Pan-Tompkins on the real records in ../shared/fixtures and perturbed copies of them):

  1. QRS energy envelope (:func:`echojax.data.ecg.quality.qrs_envelope`: 5-25 Hz slope energy), which is
     **polarity-independent**; candidates are its peaks at least :data:`REFRACTORY_S` apart and above
     :data:`THRESHOLD` of the local beat energy (median of the largest envelope values of the neighbouring
     segments, so the threshold follows amplitude changes). The envelope is reflected at both ends, so a QRS cut
     by the **edge** of the trace is still a peak (neurokit2 drops the first ~0.3 s and the last beat).
  2. **T waves and double detections**: a candidate within :data:`T_WAVE_WINDOW_S` of the previous beat is a
     T wave (or the second half of one QRS) when its energy is under half of that beat's or its shape does not
     match the record's median beat (correlation under :data:`MIN_TEMPLATE_CORR`).
  3. Each beat is placed on the record's dominant QRS deflection (the lead's polarity: an inverted lead is located
     on its negative peak, consistently beat after beat).
  4. **Beats only where the signal is ECG**: beats outside the usable part of
     :func:`echojax.data.ecg.quality.signal_quality` (flat, saturated, noise, lead-off) are dropped; the quality is
     returned with the peaks.

  ``method="neurokit"`` and ``method="xqrs"`` run those libraries instead (for comparison), followed by steps 2-4.
* :func:`detect_r_peaks_multilead` -- an (N, L) record: each lead is detected alone; detections are clustered across
  leads (at most one per lead per cluster), a cluster is scored by the QRS energy of *all* usable leads at its time
  (so a lead that fires on its T waves is outvoted by the leads whose QRS is there), clusters closer than the
  refractory period keep the higher score, and the beat is the median time of its members. Leads enter by quality,
  never by name.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings

import numpy as np
from scipy import ndimage as ndi
from scipy import signal as sps

from echojax.data.ecg.quality import SignalQuality, bandpass_sos, fill_gaps, qrs_envelope, signal_quality
from echojax.errors import UserError

T_WAVE_WINDOW_S = 0.36  # Pan-Tompkins: a candidate this close to the previous beat may be a T wave
REFRACTORY_S = 0.20  # no two QRS complexes closer than this (300 bpm)
MIN_FS = 50.0  # Hz; below this a QRS complex spans too few samples to locate
MIN_DURATION_S = 0.25  # shorter traces hold no QRS complex to find
THRESHOLD = 0.25  # a candidate's envelope must reach this fraction of the local beat energy
MIN_TEMPLATE_CORR = 0.5  # a close candidate whose shape correlates less with the median beat is not a QRS
LOCATE_S = 0.075  # a beat is placed on the dominant deflection within this of its envelope peak
METHODS = ("auto", "neurokit", "xqrs")


# --------------------------------------------------------------------------------------------------------------
# One lead


@dataclasses.dataclass(frozen=True)
class RPeaks:
  """R-peak sample indices (int64) of a trace sampled at ``fs``, with the trace's quality when it was measured."""

  indices: np.ndarray
  fs: float
  quality: SignalQuality | None = None

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


def check_fs(fs, what: str = "ECG sampling rate") -> float:
  """``fs`` as a float, or a UserError naming the field: a finite number of at least :data:`MIN_FS` Hz."""
  if isinstance(fs, bool) or not isinstance(fs, (numbers.Real, np.floating, np.integer)):
    raise UserError(f"{what} must be a number in Hz; got {fs!r} ({type(fs).__name__})")
  f = float(fs)
  if not math.isfinite(f) or f <= 0:
    raise UserError(f"{what} must be a finite number > 0 Hz; got {fs!r}")
  if f < MIN_FS:
    raise UserError(f"ECG sampled at {f:g} Hz is too coarse to find R peaks (a QRS lasts ~0.1 s); need at least "
                    f"{MIN_FS:g} Hz")
  return f


def _as_lead(ecg, fs) -> tuple[np.ndarray, float]:
  """Validate a 1-D trace (or (N, 1)) and its rate; NaNs are kept (gaps are the quality module's business)."""
  fs = check_fs(fs)
  try:
    x = np.asarray(ecg, np.float64)
  except (TypeError, ValueError) as e:
    raise UserError(f"ECG must be a numeric array; got {type(ecg).__name__} ({e})") from None
  if x.ndim == 2 and 1 in x.shape:
    x = x.reshape(-1)
  if x.ndim != 1:
    raise UserError(f"ECG must be one lead, shape (N,); got {x.shape} (pick a column, e.g. the best lead: "
                    "echojax.data.ecg.best_lead, or use detect_r_peaks_multilead)")
  if len(x) == 0:
    raise UserError("ECG is empty (no samples)")
  if len(x) < MIN_DURATION_S * fs:
    raise UserError(f"ECG has {len(x)} samples ({len(x) / fs:.3f} s at {fs:g} Hz); need at least {MIN_DURATION_S} s "
                    "to hold a QRS complex")
  if not np.isfinite(x).any():
    raise UserError("ECG has no finite samples")
  return x, fs


def _bandpass(x: np.ndarray, fs: float, lo: float, hi: float, order: int = 2) -> np.ndarray:
  """Zero-phase Butterworth band-pass (upper edge kept under Nyquist), padded by up to a second."""
  sos = bandpass_sos(order, lo, hi, float(fs))
  return sps.sosfiltfilt(sos, x, padtype="even", padlen=max(0, min(len(x) - 1, int(fs))))


def clean_ecg(ecg, fs) -> np.ndarray:
  """Baseline and noise removal (0.5-40 Hz zero-phase band-pass); NaN gaps interpolated first."""
  x, fs = _as_lead(ecg, fs)
  return _bandpass(fill_gaps(x), fs, 0.5, 40.0)


def _local_beat_energy(env: np.ndarray, fs: float) -> np.ndarray:
  """Per sample: the median over the 5 nearest 2 s segments of each segment's largest envelope value."""
  seg = max(1, int(2.0 * fs))
  n = len(env)
  nseg = max(1, -(-n // seg))
  padded = np.pad(env, (0, nseg * seg - n), mode="edge").reshape(nseg, seg)
  peaks = padded.max(1)
  local = ndi.median_filter(peaks, size=min(5, nseg), mode="nearest")
  return np.repeat(local, seg)[:n]


def _candidates(env: np.ndarray, fs: float, floor: float) -> np.ndarray:
  """Envelope peaks >= REFRACTORY_S apart above THRESHOLD of the local beat energy (and ``floor``); the envelope is
  reflected at both ends so a QRS cut by an edge still peaks."""
  m = max(1, int(REFRACTORY_S * fs))
  m = min(m, len(env) - 1)
  e = env
  if m > 0:  # the mirror image fades out, so a peak at the edge is a peak and its image never outranks it
    ramp = np.linspace(0.0, 1.0, m, endpoint=False)
    e = np.concatenate([env[m:0:-1] * ramp, env, env[-2 : -m - 2 : -1] * ramp[::-1]])
  thr = np.maximum(THRESHOLD * np.pad(_local_beat_energy(env, fs), m, mode="edge"), floor)
  pk, _ = sps.find_peaks(e, height=thr, distance=max(1, int(REFRACTORY_S * fs)))
  pk = pk - m
  return pk[(pk >= 0) & (pk < len(env))]


def _polarity(cleaned: np.ndarray, centres: np.ndarray, w: int) -> int:
  """+1 when the lead's QRS deflections are mostly upward, -1 when mostly downward (median over beats)."""
  if len(centres) == 0:
    return 1
  up, down = [], []
  for c in centres:
    seg = cleaned[max(0, c - w) : c + w + 1]
    base = np.median(seg)
    up.append(seg.max() - base)
    down.append(base - seg.min())
  return 1 if np.median(up) >= np.median(down) else -1


def _locate(cleaned: np.ndarray, centres: np.ndarray, w: int, polarity: int) -> np.ndarray:
  """Each centre moved to the dominant deflection (``polarity`` x signal maximum) within +-w samples."""
  s = polarity * cleaned
  return np.array([max(0, c - w) + int(np.argmax(s[max(0, c - w) : c + w + 1])) for c in centres], np.int64)


def _template_corr(cleaned: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
  """Correlation of each beat (+-100 ms) with the median beat; 1 where the window leaves the trace."""
  w = max(2, int(0.1 * fs))
  ok = (peaks >= w) & (peaks + w < len(cleaned))
  corr = np.ones(len(peaks))
  if ok.sum() < 3:
    return corr
  beats = np.stack([cleaned[p - w : p + w + 1] for p in peaks[ok]])
  beats = beats - beats.mean(1, keepdims=True)
  tmpl = np.median(beats, 0)
  tmpl = tmpl - tmpl.mean()
  den = np.linalg.norm(beats, axis=1) * np.linalg.norm(tmpl) + 1e-12
  corr[ok] = beats @ tmpl / den
  return corr


def _reject_t_waves(peaks: np.ndarray, energy: np.ndarray, corr: np.ndarray, fs: float) -> np.ndarray:
  """Walk the beats in time. Two within the refractory period are one: the stronger stays. Two within
  T_WAVE_WINDOW_S are a QRS and its T wave (or the previous beat's) when one has under half the other's energy or
  does not look like a beat (template correlation under MIN_TEMPLATE_CORR): the QRS-like, stronger one stays,
  whichever comes first."""
  if len(peaks) < 2:
    return peaks
  keep: list[int] = [0]
  for i in range(1, len(peaks)):
    j = keep[-1]
    gap = (peaks[i] - peaks[j]) / fs
    if gap < REFRACTORY_S:
      if energy[i] > energy[j]:
        keep[-1] = i
    elif gap < T_WAVE_WINDOW_S:
      i_weak = energy[i] < 0.5 * energy[j] or (corr[i] < MIN_TEMPLATE_CORR <= corr[j])
      j_weak = energy[j] < 0.5 * energy[i] or (corr[j] < MIN_TEMPLATE_CORR <= corr[i])
      if j_weak and not i_weak:
        keep[-1] = i
      elif not i_weak:
        keep.append(i)
    else:
      keep.append(i)
  return peaks[keep]


def _anchor_peaks(filled: np.ndarray, fs: float, method: str) -> np.ndarray:
  """R peaks from a maintained detector (neurokit2's default, or wfdb's XQRS) for comparison."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if method == "neurokit":
      import neurokit2 as nk

      _, info = nk.ecg_peaks(nk.ecg_clean(filled, sampling_rate=fs), sampling_rate=fs)
      return np.asarray(info["ECG_R_Peaks"], np.int64)
    from wfdb import processing

    return np.asarray(processing.xqrs_detect(filled, fs, verbose=False), np.int64)


def detect_r_peaks(ecg, fs, *, method: str = "auto", reject_t_waves: bool = True,
                   quality: bool = True) -> RPeaks:
  """R peaks of one ECG lead at any sampling rate >= 50 Hz, of any polarity and length >= 0.25 s.

  Args:
    ecg: (N,) trace in any unit (mV typical); NaN samples are gaps (short ones bridged, long ones unusable).
    fs: sampling rate in Hz.
    method: ``"auto"`` (this module's detector, see the module docstring), or ``"neurokit"`` / ``"xqrs"`` (that
      library's candidates, then the same T-wave, location and quality steps).
    reject_t_waves: drop T waves and double detections (module docstring, step 2).
    quality: drop beats outside the usable signal (flat, saturated, noise, lead-off) and return the quality.
  """
  return _detect(ecg, fs, method, reject_t_waves, quality)[0]


def _detect(ecg, fs, method: str = "auto", reject_t_waves: bool = True,
            quality: bool = True) -> tuple[RPeaks, np.ndarray]:
  """:func:`detect_r_peaks`, and the QRS envelope it computed (multi-lead fusion scores clusters with it)."""
  if method not in METHODS:
    raise UserError(f"unknown R-peak method {method!r}; use one of {', '.join(METHODS)}")
  x, fs = _as_lead(ecg, fs)
  filled = fill_gaps(x)
  cleaned = _bandpass(filled, fs, 0.5, 40.0)
  env = qrs_envelope(filled, fs)
  q = signal_quality(x, fs, envelope=env) if quality else None
  w = max(1, int(LOCATE_S * fs))
  if method == "auto":
    floor = 0.0
    if q is not None and q.usable.any():  # beat energy of the usable signal: flat stretches cannot reach it
      floor = 0.02 * float(np.percentile(env[q.usable], 99))
    centres = _candidates(env, fs, floor)
  else:
    try:
      centres = _anchor_peaks(filled, fs, method)
    except Exception:  # the libraries raise on traces they cannot handle: no beats from them
      centres = np.zeros(0, np.int64)
    centres = np.unique(centres[(centres >= 0) & (centres < len(x))])
  polarity = _polarity(cleaned, centres, w)
  peaks = _locate(cleaned, centres, w, polarity)
  if len(peaks):
    peaks, first = np.unique(peaks, return_index=True)
    centres = centres[first]
  if reject_t_waves and len(peaks) > 1:
    energy = env[centres]
    peaks = _reject_t_waves(peaks, energy, _template_corr(cleaned, peaks, fs), fs)
  if q is not None:
    peaks = peaks[q.usable[peaks]]
  return RPeaks(peaks.astype(np.int64), fs, q), env


# --------------------------------------------------------------------------------------------------------------
# Several leads

SUPPORT_LEVEL = 0.1  # a lead supports a cluster when its envelope there reaches this fraction of its beat energy


def _resolve_clusters(beats: np.ndarray, scores: np.ndarray, support: np.ndarray, fs: float) -> np.ndarray:
  """Clusters closer than the refractory period are one beat (the better stays); within T_WAVE_WINDOW_S, one that
  fewer leads support and that scores lower is one lead's T wave (a QRS shows in every lead, a T wave that outgrows
  its QRS in one lead does not)."""
  keep: list[int] = []
  for i in range(len(beats)):
    if not keep:
      keep.append(i)
      continue
    j = keep[-1]
    gap = (beats[i] - beats[j]) / fs
    better = (support[i], scores[i]) > (support[j], scores[j])
    if gap < REFRACTORY_S:
      if better:
        keep[-1] = i
    elif gap < T_WAVE_WINDOW_S and support[i] != support[j]:
      if support[i] > support[j] and scores[i] > scores[j]:
        keep[-1] = i
      elif not (support[i] < support[j] and scores[i] < scores[j]):
        keep.append(i)
    else:
      keep.append(i)
  return beats[keep]


def detect_r_peaks_multilead(ecg, fs, *, method: str = "auto", tol_s: float = 0.12) -> RPeaks:
  """R peaks of a multi-lead record (N, L) by clustering the leads' detections (module docstring).

  A cluster holds at most one detection per lead, all within ``tol_s`` of its first member; the beat is the median
  of its members. Its score is the sum, over the leads usable at that time, of each lead's QRS envelope there (the
  maximum within ``tol_s``) divided by that lead's beat energy (99th percentile of its usable envelope, capped at
  2); its support is the number of leads reaching SUPPORT_LEVEL there. A cluster needs a score of at least a
  quarter of the usable leads; then :func:`_resolve_clusters` keeps one beat per refractory period and drops a
  cluster within T_WAVE_WINDOW_S of another that both more leads support and scores higher. A lead with no finite
  sample (lead-off) takes no part. The returned quality is that of the lead with the most usable signal.
  """
  fs = check_fs(fs)
  x = np.asarray(ecg, np.float64)
  if x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1):
    return detect_r_peaks(x.reshape(-1), fs, method=method)
  if x.ndim != 2:
    raise UserError(f"multi-lead ECG must be (N, leads); got shape {x.shape}")
  live = [i for i in range(x.shape[1]) if np.isfinite(x[:, i]).any()]
  if not live:
    raise UserError("multi-lead ECG has no finite samples in any lead")
  norm_env = np.zeros(x.shape)  # each lead's envelope in units of its own beat energy; 0 where unusable
  usable = np.zeros(x.shape, bool)
  per_lead: list[RPeaks] = []
  for i in live:
    r, env = _detect(x[:, i], fs, method)
    per_lead.append(r)
    usable[:, i] = r.quality.usable
    ref = float(np.percentile(env[usable[:, i]], 99)) if usable[:, i].any() else 0.0  # its QRS, whatever it detected
    if ref > 0:
      norm_env[:, i] = np.minimum(env / ref, 2.0) * usable[:, i]  # one lead's artefact cannot outvote the rest
  tol = max(1, int(tol_s * fs))
  peak_env = ndi.maximum_filter1d(norm_env, 2 * tol + 1, axis=0)
  det = np.concatenate([r.indices for r in per_lead] + [np.zeros(0, np.int64)])
  lead = np.concatenate([np.full(len(r.indices), i) for i, r in zip(live, per_lead)] + [np.zeros(0, np.int64)])
  order = np.argsort(det, kind="stable")
  det, lead = det[order], lead[order]
  clusters: list[list[int]] = []
  for k in range(len(det)):
    if clusters and det[k] - det[clusters[-1][0]] <= tol and lead[k] not in {lead[m] for m in clusters[-1]}:
      clusters[-1].append(k)
    else:
      clusters.append([k])
  beats = np.array([int(np.median(det[c])) for c in clusters], np.int64)
  scores = np.array([peak_env[b].sum() for b in beats]) if len(beats) else np.zeros(0)
  n_usable = usable[beats].sum(1) if len(beats) else np.zeros(0)
  ok = (scores >= 0.25 * n_usable) & (n_usable > 0)
  support = (peak_env[beats] > SUPPORT_LEVEL).sum(1) if len(beats) else np.zeros(0, np.int64)
  beats, scores, support = beats[ok], scores[ok], support[ok]
  beats = _resolve_clusters(beats, scores, support, fs)
  best = int(np.argmax([r.quality.usable_fraction for r in per_lead]))
  return RPeaks(beats, fs, per_lead[best].quality)
