"""ECG signal quality: which parts of a lead are ECG at all (flat, saturated, noise, lead-off), and which lead is best.

* :func:`signal_quality` -- a label per segment (:data:`QUALITY_LABELS`) and a per-sample ``usable`` mask. The
  detector (:mod:`echojax.data.ecg.detect`) keeps no beat outside ``usable``, and the phase sampler uses only cycles
  inside it.
* :func:`lead_scores` / :func:`best_lead` -- rank the leads of a record by quality (usable fraction times QRS
  prominence), so readers and multi-lead fusion pick leads by their signal, not by their name.

The rules, all vectorised numpy/scipy (cheap next to R-peak detection):

* **lead_off** -- missing samples (NaN) in runs longer than :data:`MAX_GAP_S`; shorter gaps are interpolated by the
  detector and readers.
* **flat** -- the local peak-to-peak amplitude over :data:`FLAT_WINDOW_S` is under :data:`FLAT_FRACTION` of the
  record's typical amplitude (a dropout, or a disconnected lead with a little noise on it); at least
  :data:`FLAT_WINDOW_S` long, so an isoelectric TP segment is never flat.
* **saturated** -- more than :data:`SATURATED_FRACTION` of a segment sits on the record's rail (its minimum or
  maximum value): a clipped amplifier.
* **noise** -- the QRS-band energy envelope is not peaky: an ECG concentrates its 5-25 Hz slope energy in its QRS
  complexes (99th percentile of the envelope over a 4 s window / 25th percentile over the 2 s segment is 300-6000
  on LUDB's clean leads, over 40 with EMG noise as strong as the ECG), noise spreads it evenly (2-12 for white,
  pink or band-limited noise). Under :data:`NOISE_PEAKINESS` is noise.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import ndimage as ndi
from scipy import signal as sps

QUALITY_LABELS = ("good", "flat", "saturated", "noise", "lead_off")
SEGMENT_S = 2.0  # one label per segment of this length
NOISE_WINDOW_S = 4.0  # the noise test looks at this much signal around each segment (>= 2 beats at 30 bpm)
NOISE_PEAKINESS = 20.0  # envelope p99 / p25 under this = noise (see module docstring for the measured ranges)
FLAT_WINDOW_S = 1.0
FLAT_FRACTION = 0.05
SATURATED_FRACTION = 0.05
MAX_GAP_S = 0.15  # NaN runs up to this long are interpolated; longer ones are lead-off


def nan_runs(x: np.ndarray) -> list[tuple[int, int]]:
  """(start, stop) sample ranges of consecutive NaN/inf samples."""
  bad = ~np.isfinite(x)
  if not bad.any():
    return []
  d = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
  return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def fill_gaps(x: np.ndarray) -> np.ndarray:
  """Non-finite samples linearly interpolated from their finite neighbours (edges held); a copy."""
  x = np.array(x, np.float64)
  bad = ~np.isfinite(x)
  if bad.any() and not bad.all():
    idx = np.arange(len(x))
    x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
  return x


@functools.lru_cache(maxsize=64)
def bandpass_sos(order: int, lo: float, hi: float, fs: float) -> np.ndarray:
  """Butterworth band-pass second-order sections (cached: designing one costs more than filtering 10 s with it)."""
  return sps.butter(order, [lo, min(hi, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")


def qrs_envelope(x: np.ndarray, fs: float) -> np.ndarray:
  """QRS energy envelope: 5-25 Hz band-pass, squared slope, 100 ms moving average (no NaNs in ``x``)."""
  sos = bandpass_sos(2, 5.0, 25.0, float(fs))
  padlen = min(len(x) - 1, int(fs))  # a second of mirrored signal: shorter pads leave edge transients
  bp = sps.sosfiltfilt(sos, x, padtype="even", padlen=max(padlen, 0)) if len(x) > 1 else np.zeros_like(x)
  e = np.gradient(bp) ** 2 if len(x) > 1 else np.zeros_like(x)
  return ndi.uniform_filter1d(e, max(1, int(0.1 * fs)), mode="nearest")


@dataclasses.dataclass(frozen=True)
class SignalQuality:
  """Quality of one lead: ``labels[i]`` for samples ``[bounds[i], bounds[i + 1])``, and ``usable`` per sample."""

  labels: tuple[str, ...]
  bounds: np.ndarray  # int64 (len(labels) + 1,) sample boundaries of the segments
  usable: np.ndarray  # bool (N,)
  fs: float

  @property
  def usable_fraction(self) -> float:
    return float(self.usable.mean()) if len(self.usable) else 0.0

  def segments(self) -> list[tuple[float, float, str]]:
    """(start_s, end_s, label) per segment, neighbouring segments of the same label merged."""
    out: list[tuple[float, float, str]] = []
    for i, lab in enumerate(self.labels):
      a, b = self.bounds[i] / self.fs, self.bounds[i + 1] / self.fs
      if out and out[-1][2] == lab:
        out[-1] = (out[-1][0], b, lab)
      else:
        out.append((a, b, lab))
    return out

  def summary(self) -> str:
    """``"good 8.0 s, flat 2.0 s"``: seconds per label."""
    secs: dict[str, float] = {}
    for a, b, lab in self.segments():
      secs[lab] = secs.get(lab, 0.0) + b - a
    return ", ".join(f"{k} {v:.1f} s" for k, v in secs.items())


def signal_quality(x: np.ndarray, fs: float, *, segment_s: float = SEGMENT_S,
                   envelope: np.ndarray | None = None) -> SignalQuality:
  """Label each ``segment_s`` segment of one lead ``good`` or why not (module docstring), and a per-sample mask.

  ``envelope``: :func:`qrs_envelope` of the gap-filled trace when the caller has it already (the detector does).

  A sample is usable when its segment is good and it is not inside a flat run or a long NaN gap (a flat dropout
  or gap shorter than a segment is cut out precisely, not a whole segment).
  """
  raw = np.asarray(x, np.float64).reshape(-1)
  n = len(raw)
  seg = max(1, int(round(segment_s * fs)))
  bounds = np.append(np.arange(0, n, seg), n).astype(np.int64)
  if len(bounds) > 2 and bounds[-1] - bounds[-2] < seg // 2:  # fold a short tail into the previous segment
    bounds = np.delete(bounds, -2)
  nseg = len(bounds) - 1
  if n == 0 or not np.isfinite(raw).any():
    return SignalQuality(("lead_off",) * nseg, bounds, np.zeros(n, bool), float(fs))

  gap = np.zeros(n, bool)
  for a, b in nan_runs(raw):
    if (b - a) / fs > MAX_GAP_S:
      gap[a:b] = True
  filled = fill_gaps(raw)

  # flat: local peak-to-peak over FLAT_WINDOW_S under FLAT_FRACTION of the typical (median) 2 s amplitude
  w = max(2, int(FLAT_WINDOW_S * fs))
  local_ptp = ndi.maximum_filter1d(filled, w) - ndi.minimum_filter1d(filled, w)
  seg_ptp = np.array([np.ptp(filled[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
  live = seg_ptp[seg_ptp > 0]
  typical = float(np.percentile(live, 75)) if len(live) else 0.0
  flat = local_ptp <= FLAT_FRACTION * typical
  flat = ndi.maximum_filter1d(flat.view(np.uint8), w).astype(bool)  # a flat window's centre marks its whole width

  # saturated: samples on the record's rail
  lo, hi = float(filled.min()), float(filled.max())
  eps = 1e-6 * max(hi - lo, 1e-12)
  rail = (filled <= lo + eps) | (filled >= hi - eps)

  env = qrs_envelope(filled, fs) if envelope is None else np.asarray(envelope)
  edge = np.zeros(n, bool)  # the filters' start-up at the trace's ends is not evidence either way
  m = min(int(0.3 * fs), n // 4)
  edge[:m] = True
  edge[n - m :] = True
  half = int(NOISE_WINDOW_S * fs / 2)
  d = max(1, int(fs // 125))
  labels, noisy = [], []
  for a, b in zip(bounds[:-1], bounds[1:]):
    c = (a + b) // 2
    wa = int(np.clip(c - half, 0, max(0, n - 2 * half)))  # full length at both ends of the trace
    wb = min(n, wa + 2 * half)
    live_w = ~(flat[wa:wb] | gap[wa:wb])
    # every d-th sample: the envelope is a 100 ms average, so 8 ms steps lose nothing and save most of the time
    e = env[wa:wb:d][(live_w & ~edge[wa:wb])[::d]]
    e_seg = env[a:b:d][~(flat[a:b] | gap[a:b] | edge[a:b])[::d]]
    if len(e_seg) <= 10:
      e_seg = e
    # the window's beats over the segment's own floor: a noise burst raises the floor of its segment only
    peaky = np.percentile(e, 99) / max(np.percentile(e_seg, 25), 1e-30) if len(e) > 10 else 0.0
    bad = "saturated" if rail[a:b].mean() > SATURATED_FRACTION else ("noise" if peaky < NOISE_PEAKINESS else "")
    noisy.append(bool(bad) and live_w.any())
    if gap[a:b].mean() > 0.5:
      labels.append("lead_off")
    elif flat[a:b].mean() > 0.5:
      labels.append("flat")
    else:
      labels.append(bad or "good")
  # flat runs and gaps are cut out to the sample; noise and saturation take their whole segment
  usable = ~np.repeat(np.array(noisy, bool), np.diff(bounds)) & ~flat & ~gap
  return SignalQuality(tuple(labels), bounds, usable, float(fs))


def lead_scores(signals: np.ndarray, fs: float) -> np.ndarray:
  """A quality score per lead of an (N, L) record: usable fraction x log10 of the QRS peakiness (0 when unusable)."""
  x = np.asarray(signals, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  scores = np.zeros(x.shape[1])
  for i in range(x.shape[1]):
    if not np.isfinite(x[:, i]).any():
      continue
    env = qrs_envelope(fill_gaps(x[:, i]), fs)
    q = signal_quality(x[:, i], fs, envelope=env)
    if not q.usable.any():
      continue
    e = env[q.usable]
    peaky = np.percentile(e, 99) / max(np.percentile(e, 25), 1e-30)
    scores[i] = q.usable_fraction * np.log10(max(peaky, 1.0))
  return scores


def best_lead(signals: np.ndarray, fs: float) -> int:
  """Index of the best lead of an (N, L) record by :func:`lead_scores` (the first on ties)."""
  return int(np.argmax(lead_scores(signals, fs)))
