"""R-peak detectors side by side: echojax against neurokit2, wfdb's XQRS and Pan-Tompkins, on real and perturbed ECG.

    python benchmarks/ecg_rpeaks.py [--seed 0] [--quick] [--detector NAME ...] [--only CLASS ...] [--json PATH]

Detectors (columns), each called one lead at a time:

- **echojax**: ``echojax.data.ecg.detect_r_peaks(x, fs).indices`` (the public function only, whatever its insides),
  given the raw trace, NaNs included;
- **neurokit2**: ``nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=fs), sampling_rate=fs)`` -> ``info["ECG_R_Peaks"]``;
- **xqrs**: ``wfdb.processing.xqrs_detect(x, fs, verbose=False)`` (``learn=True``, its default);
- **pantompkins**: neurokit2's ``pantompkins1985`` method, for both ``ecg_clean`` and ``ecg_peaks``.

The three anchors cannot take NaN: they get the trace with its NaNs linearly interpolated (``np.interp``; edges held).
A detector that raises counts as "no detections" on that lead, and the error is reported under the table.

Records (rows), read from ``../shared/fixtures/ecg/`` (never copied into the repository):

- **LUDB 1** (500 Hz, 12 leads, 10 s): truth per lead = the ``"N"`` (QRS peak) samples of ``wfdb.rdann(base, lead)``.
  LUDB leaves the first and last beat unannotated, so only detections inside the annotated span (first annotated
  QRS - tolerance to last + tolerance) are scored.
- **PTB s0010_re** (1000 Hz, 15 leads, 38.4 s) and **PTB-XL 00001_lr** (100 Hz, 12 leads, 10 s) have no beat
  annotations. Their reference is a CONSENSUS OF THE ANCHORS, NOT AN ANNOTATION: every (anchor, lead) pair is
  detected, detections closer than 50 ms are chained, each chain is split into 100 ms windows (greedily, the window
  found by most pairs first), and a window found by a majority of the pairs is a reference beat (at the median of its
  detections). A window found by at least a quarter of the pairs but not a majority, and over 200 ms from every
  reference beat, is "don't care" (within 200 ms it is the same beat's stragglers). Every lead is
  scored against that one reference; the anchors helped make it, so they are favoured on these rows.

Perturbed copies of every real LUDB and PTB lead, deterministic per ``--seed``, truth carried over:

- **inverted** polarity; **baseline wander**: two sinusoids of 0.1-0.5 Hz, 1 mV together;
- **powerline 50 / 60 Hz**: a sinusoid of 20% of the lead's QRS amplitude (median peak-to-peak within +-50 ms of
  its beats), so 40% of the QRS height peak to peak;
- **EMG noise**: Gaussian noise band-limited to 20-150 Hz (under 0.45 fs), scaled to an SNR of 10-15 dB in the
  QRS band (5-30 Hz power of the lead over 5-30 Hz power of the noise);
- **NaN gaps**: three gaps of 10-200 ms; beats inside a gap longer than 100 ms leave the truth (don't care) and
  detections inside such a gap are neither true nor false;
- **flat dropout**: the trace held at one value for 1-3 s; beats inside leave the truth and detections inside ARE
  false positives (beats within 50 ms of the dropout's edges are don't care);
- **window 2 / 5 / 10 s**: windows cut at random points (three / two / one per lead; 10 s from PTB only, as LUDB
  lasts 10 s); truth = the beats inside, a beat within 50 ms of an edge (inside or just outside: part of its QRS is in
  the window) is don't care;
- **resampled 128 / 250 / 360 / 1000 Hz**: ``scipy.signal.resample_poly``, truth scaled (1000 Hz from LUDB only);
- **pure noise** (10 s of white Gaussian noise at 128, 250, 500 and 1000 Hz) and **flat** (10 s constant traces):
  no truth, every detection is a false positive; the table shows the FP count.

Scoring: a detection matches a truth beat within 150 ms, each beat to at most one detection (greedy, nearest pairs
first); don't-care beats take part in the matching but count neither way. TP, FP, FN are summed over all leads and
copies of a class; Se = TP / (TP + FN), PPV = TP / (TP + FP). Time = wall seconds per minute of signal over all
scored calls, after one untimed warm-up call per detector (imports done before timing).

Verdict per class for echojax: Se and PPV >= 99.9% on the annotated record (LUDB), >= 99.5% on each other class
(the consensus rows and every perturbation), and both Se and PPV at least those of the class's best anchor (the one
with the highest F1 = 2 TP / (2 TP + FP + FN), so that an anchor finding a quarter of the beats with no false positive
does not set the PPV bar), within 0.1 percentage point; FP = 0 on the classes without truth. Time: no more than 2x
neurokit2's. ``--quick`` runs a small subset (LUDB and PTB-XL, a few classes) in seconds, for the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys
import time
import warnings
import zlib
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from scipy import signal as sps  # noqa: E402

from echojax.errors import UserError, cli_main  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "ecg"
TOL_S = 0.150  # match tolerance
EDGE_S = 0.050  # a beat this close to a window / dropout edge is don't care
LONG_GAP_S = 0.100  # NaN gaps longer than this: beats inside leave the truth, detections inside are ignored
CONSENSUS_WINDOW_S = 0.100
CONSENSUS_CHAIN_S = 0.050
CONSENSUS_SAME_BEAT_S = 0.200  # no two beats closer (refractory period)
TARGET_ANNOTATED = 0.999
TARGET_OTHER = 0.995
WITHIN = 0.001  # of the best anchor, as a fraction
MAX_TIME_RATIO = 2.0
DETECTOR_NAMES = ("echojax", "neurokit2", "xqrs", "pantompkins")
ANCHORS = ("neurokit2", "xqrs", "pantompkins")
EMPTY = np.zeros(0, np.int64)


# --------------------------------------------------------------------------------------------------------------
# detectors


def _nan_interp(x: np.ndarray) -> np.ndarray:
  """NaNs linearly interpolated (edges held), for the anchors that cannot take them."""
  x = np.asarray(x, np.float64)
  bad = ~np.isfinite(x)
  if bad.any():
    if bad.all():
      raise ValueError("no finite samples")
    idx = np.arange(len(x))
    x = x.copy()
    x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
  return x


def det_echojax(x: np.ndarray, fs: float) -> np.ndarray:
  from echojax.data.ecg import detect_r_peaks

  return detect_r_peaks(x, fs).indices


def det_neurokit2(x: np.ndarray, fs: float) -> np.ndarray:
  import neurokit2 as nk

  x = _nan_interp(x)
  _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=fs), sampling_rate=fs)
  return info["ECG_R_Peaks"]


def det_xqrs(x: np.ndarray, fs: float) -> np.ndarray:
  from wfdb import processing

  return processing.xqrs_detect(_nan_interp(x), fs, verbose=False)


def det_pantompkins(x: np.ndarray, fs: float) -> np.ndarray:
  import neurokit2 as nk

  x = _nan_interp(x)
  cleaned = nk.ecg_clean(x, sampling_rate=fs, method="pantompkins1985")
  _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="pantompkins1985")
  return info["ECG_R_Peaks"]


DETECTORS = {"echojax": det_echojax, "neurokit2": det_neurokit2, "xqrs": det_xqrs, "pantompkins": det_pantompkins}


@dataclasses.dataclass
class Call:
  indices: np.ndarray
  seconds: float
  error: str | None


def run_detector(name: str, x: np.ndarray, fs: float) -> Call:
  """One detector on one lead: sorted unique in-range indices; an exception = no detections, kept as the error."""
  err = None
  with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    try:
      out = np.asarray(DETECTORS[name](x, fs)).reshape(-1)
    except Exception as e:  # noqa: BLE001 -- any failure of a detector is a result to report, not a crash
      out, err = EMPTY, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    dt = time.perf_counter() - t0
  out = out[np.isfinite(out)].astype(np.int64) if out.size else EMPTY
  return Call(np.unique(out[(out >= 0) & (out < len(x))]), dt, err)


# --------------------------------------------------------------------------------------------------------------
# scoring


def match(truth: np.ndarray, det: np.ndarray, tol: float) -> list[tuple[int, int]]:
  """Greedy nearest matching: (truth index, detection index) pairs within ``tol`` samples, closest pairs first,
  each truth beat and each detection used at most once."""
  truth, det = np.asarray(truth, np.float64), np.asarray(det, np.float64)
  if not len(truth) or not len(det):
    return []
  d = np.abs(truth[:, None] - det[None, :])
  ti, di = np.nonzero(d <= tol)
  used_t, used_d, pairs = set(), set(), []
  for k in np.argsort(d[ti, di], kind="stable"):
    i, j = int(ti[k]), int(di[k])
    if i not in used_t and j not in used_d:
      used_t.add(i)
      used_d.add(j)
      pairs.append((i, j))
  return pairs


def score(det, truth, tol: float, optional=(), ignore=()) -> tuple[int, int, int]:
  """(TP, FP, FN) of detections against truth beats (sample indices), within ``tol`` samples.

  ``optional``: don't-care beats: matched like truth, but neither TP nor FN, and a detection matched to one is no FP.
  ``ignore``: [start, stop) sample spans whose detections count neither way (dropped before matching)."""
  det = np.asarray(det, np.float64)
  for a, b in ignore:
    det = det[(det < a) | (det >= b)]
  truth, optional = np.asarray(truth, np.float64), np.asarray(optional, np.float64)
  pairs = match(np.concatenate([truth, optional]), det, tol)
  tp = sum(1 for i, _ in pairs if i < len(truth))
  fp = len(det) - len(pairs)
  return tp, fp, len(truth) - tp


def f1(tp: int, fp: int, fn: int) -> float:
  """2 TP / (2 TP + FP + FN): the one number that picks the best anchor of a class (0 when nothing to score)."""
  return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def rates(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
  return (tp / (tp + fn) if tp + fn else None), (tp / (tp + fp) if tp + fp else None)


# --------------------------------------------------------------------------------------------------------------
# records and their references


@dataclasses.dataclass
class Case:
  """One lead to detect: truth beats, don't-care beats and ignored sample spans (detections there count neither way)."""

  label: str
  x: np.ndarray
  fs: float
  truth: np.ndarray
  optional: np.ndarray = dataclasses.field(default_factory=lambda: EMPTY)
  ignore: tuple[tuple[float, float], ...] = ()

  @property
  def minutes(self) -> float:
    return len(self.x) / self.fs / 60.0


def read_record(rel: str):
  import wfdb

  path = FIXTURES / rel
  if not path.with_suffix(".hea").is_file():
    raise UserError(f"ECG fixture {path}.hea not found: this benchmark reads the real records in {FIXTURES} "
                    "(see ../shared/fixtures/README.md)")
  rec = wfdb.rdrecord(str(path))
  return rec, np.asarray(rec.p_signal, np.float64), float(rec.fs)


def ludb_cases() -> list[Case]:
  import wfdb

  rec, sig, fs = read_record("ludb/1")
  tol = TOL_S * fs
  out = []
  for i, name in enumerate(rec.sig_name):
    ann = wfdb.rdann(str(FIXTURES / "ludb" / "1"), name)
    truth = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym == "N"], np.int64)
    ignore = ((-np.inf, truth.min() - tol), (truth.max() + tol + 1, np.inf))  # LUDB's unannotated first/last beat
    out.append(Case(f"ludb/1 {name}", sig[:, i], fs, truth, EMPTY, ignore))
  return out


def consensus(per_pair: list[np.ndarray], fs: float) -> tuple[np.ndarray, np.ndarray]:
  """(reference beats, don't-care beats) from detections of several (detector, lead) pairs: chains of detections
  closer than 50 ms, each split greedily into 100 ms windows (most pairs first); a window found by a majority of
  pairs is a beat (at the median of its detections), one found by at least a quarter but not a majority is don't
  care unless it lies within 200 ms of a beat."""
  n = len(per_pair)
  pts = np.concatenate([np.asarray(p, np.float64) for p in per_pair] + [np.zeros(0)])
  pair = np.concatenate([np.full(len(p), k) for k, p in enumerate(per_pair)] + [np.zeros(0, int)])
  order = np.argsort(pts, kind="stable")
  pts, pair = pts[order], pair[order]
  beats, amb = [], []
  win, gap = CONSENSUS_WINDOW_S * fs, CONSENSUS_CHAIN_S * fs
  starts = np.flatnonzero(np.diff(pts, prepend=-np.inf) > gap)
  for a, b in zip(starts, np.append(starts[1:], len(pts))):
    p, q = pts[a:b], pair[a:b]
    alive = np.ones(len(p), bool)
    while alive.any():
      best, members = 0, None
      for c in p[alive]:
        m = alive & (p >= c) & (p <= c + win)
        s = len(set(q[m].tolist()))
        if s > best:
          best, members = s, m
      if best > n / 2:
        beats.append(np.median(p[members]))
      elif best >= n / 4:
        amb.append(np.median(p[members]))
      alive &= ~members
  beats = np.sort(np.round(beats).astype(np.int64))
  # a weaker window within 200 ms of a beat holds that beat's stragglers (one detector placing its peaks late):
  # not a beat of its own, and as a don't-care it would take a detection away from the beat in the matching
  amb = np.round([a for a in amb if not len(beats) or np.min(np.abs(beats - a)) > CONSENSUS_SAME_BEAT_S * fs])
  return beats, amb.astype(np.int64)


def consensus_cases(rel: str, calls_out: dict) -> tuple[list[Case], dict]:
  """Leads of an unannotated record, each with the anchors' consensus as truth. ``calls_out[(label, anchor)]`` gets
  the anchors' calls on the raw leads (reused as that record's row)."""
  rec, sig, fs = read_record(rel)
  per_pair = []
  for i, name in enumerate(rec.sig_name):
    for a in ANCHORS:
      c = run_detector(a, sig[:, i], fs)
      calls_out[(f"{rel} {name}", a)] = c
      per_pair.append(c.indices)
  beats, amb = consensus(per_pair, fs)
  info = {"beats": len(beats), "dont_care": len(amb), "pairs": len(per_pair), "fs": fs,
          "leads": len(rec.sig_name), "seconds": sig.shape[0] / fs}
  return [Case(f"{rel} {n}", sig[:, i], fs, beats, amb) for i, n in enumerate(rec.sig_name)], info


# --------------------------------------------------------------------------------------------------------------
# perturbations (each: a base lead and a generator -> perturbed copies with their truth)


def _qrs_amplitude(c: Case) -> float:
  w = int(0.05 * c.fs)
  beats = [b for b in c.truth if w <= b < len(c.x) - w]
  return float(np.median([np.ptp(c.x[b - w : b + w + 1]) for b in beats])) if beats else float(np.ptp(c.x))


def _band(x: np.ndarray, fs: float, lo: float, hi: float, order: int = 4) -> np.ndarray:
  sos = sps.butter(order, [lo, min(hi, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
  return sps.sosfiltfilt(sos, x)


def _copy(c: Case, tag: str, x: np.ndarray, **kw) -> Case:
  return dataclasses.replace(c, label=f"{c.label} [{tag}]", x=x, **kw)


def _drop(beats: np.ndarray, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
  """(beats outside [a, b), beats inside)."""
  inside = (beats >= a) & (beats < b)
  return beats[~inside], beats[inside]


def p_invert(c, rng):
  return [_copy(c, "inverted", -c.x)]


def p_wander(c, rng):
  t = np.arange(len(c.x)) / c.fs
  a1 = rng.uniform(0.3, 0.7)
  w = sum(a * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi)) for a in (a1, 1.0 - a1))
  return [_copy(c, "wander", c.x + w)]


def p_powerline(f0):
  def gen(c, rng):
    t = np.arange(len(c.x)) / c.fs
    amp = 0.2 * _qrs_amplitude(c)
    return [_copy(c, f"{f0} Hz", c.x + amp * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)))]

  return gen


def p_emg(c, rng):
  snr_db = rng.uniform(10, 15)
  noise = _band(rng.standard_normal(len(c.x)), c.fs, 20.0, 150.0)
  p_sig = np.mean(_band(c.x - np.mean(c.x), c.fs, 5.0, 30.0) ** 2)
  p_noise = np.mean(_band(noise, c.fs, 5.0, 30.0) ** 2)
  noise *= np.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))
  return [_copy(c, f"EMG {snr_db:.1f} dB", c.x + noise)]


def p_nan_gaps(c, rng):
  x, truth, opt, ignore = c.x.copy(), c.truth, c.optional, list(c.ignore)
  for _ in range(3):
    n = int(rng.uniform(0.01, 0.2) * c.fs)
    a = int(rng.integers(0, len(x) - n))
    x[a : a + n] = np.nan
    if n > LONG_GAP_S * c.fs:
      truth, gone = _drop(truth, a, a + n)
      opt = np.concatenate([opt, gone])
      ignore.append((a, a + n))
  return [_copy(c, "NaN gaps", x, truth=truth, optional=opt, ignore=tuple(ignore))]


def p_flat(c, rng):
  n = int(rng.uniform(1.0, 3.0) * c.fs)
  a = int(rng.integers(0, len(c.x) - n))
  x = c.x.copy()
  x[a : a + n] = x[a]
  e = EDGE_S * c.fs
  truth, _ = _drop(c.truth, a + e, a + n - e)  # beats well inside: gone; a detection there is a false positive
  truth, near = _drop(truth, a - e, a + e)
  truth, near2 = _drop(truth, a + n - e, a + n + e)
  opt, _ = _drop(c.optional, a + e, a + n - e)
  return [_copy(c, f"flat {a / c.fs:.1f}-{(a + n) / c.fs:.1f} s", x, truth=truth,
                optional=np.concatenate([opt, near, near2]))]


def p_window(seconds, per_lead):
  def gen(c, rng):
    n = int(seconds * c.fs)
    if len(c.x) <= n:
      return []
    out, e = [], EDGE_S * c.fs
    for _ in range(per_lead):
      a = int(rng.integers(0, len(c.x) - n + 1))
      keep, _ = _drop(c.truth, -np.inf, a + e)
      keep, _ = _drop(keep, a + n - e, np.inf)
      # a beat within 50 ms of a cut, on either side, has part of its QRS in the window: don't care
      edge = np.concatenate([_drop(c.truth, a - e, a + e)[1], _drop(c.truth, a + n - e, a + n + e)[1]])
      opt = np.concatenate([_drop(c.optional, a, a + n)[1], edge])
      ignore = tuple((max(s - a, 0), min(t - a, n)) for s, t in c.ignore if t > a and s < a + n)
      out.append(_copy(c, f"{a / c.fs:.2f}+{seconds:g} s", c.x[a : a + n].copy(), truth=keep - a,
                       optional=opt - a, ignore=ignore))
    return out

  return gen


def p_resample(fs_new):
  def gen(c, rng):
    if fs_new == c.fs:
      return []
    r = Fraction(fs_new / c.fs).limit_denominator(1000)
    x = sps.resample_poly(c.x, r.numerator, r.denominator)
    k = fs_new / c.fs
    scale = lambda b: np.round(np.asarray(b) * k).astype(np.int64)  # noqa: E731
    return [dataclasses.replace(c, label=f"{c.label} [{fs_new:g} Hz]", x=x, fs=float(fs_new), truth=scale(c.truth),
                                optional=scale(c.optional), ignore=tuple((a * k, b * k) for a, b in c.ignore))]

  return gen


SYNTH_FS = (128.0, 250.0, 500.0, 1000.0)


def synthetic_noise(rng) -> list[Case]:
  return [Case(f"noise {fs:g} Hz", 0.2 * rng.standard_normal(int(10 * fs)), fs, EMPTY) for fs in SYNTH_FS]


def synthetic_flat(rng) -> list[Case]:
  return [Case(f"flat {v:.2f} mV {fs:g} Hz", np.full(int(10 * fs), v), fs, EMPTY)
          for fs, v in zip(SYNTH_FS, (0.0, rng.uniform(-2, 2), 0.0, rng.uniform(-2, 2)))]


#: name -> (generator, whether the quick run has it); windows 10 s only exist for PTB (LUDB lasts 10 s)
PERTURBATIONS = {
  "inverted": (p_invert, True),
  "baseline wander": (p_wander, False),
  "powerline 50 Hz": (p_powerline(50.0), False),
  "powerline 60 Hz": (p_powerline(60.0), True),
  "EMG noise": (p_emg, False),
  "NaN gaps": (p_nan_gaps, True),
  "flat dropout": (p_flat, True),
  "window 2 s": (p_window(2.0, 3), True),
  "window 5 s": (p_window(5.0, 2), False),
  "window 10 s": (p_window(10.0, 1), False),
  "resampled 128 Hz": (p_resample(128.0), False),
  "resampled 250 Hz": (p_resample(250.0), True),
  "resampled 360 Hz": (p_resample(360.0), False),
  "resampled 1000 Hz": (p_resample(1000.0), False),
}
SYNTHETIC = {"pure noise": synthetic_noise, "flat": synthetic_flat}
REAL = {"LUDB 1 (annotated)": "ludb/1", "PTB s0010_re (consensus)": "ptb/s0010_re",
        "PTB-XL 00001_lr (consensus)": "ptbxl/00001_lr"}
QUICK_REAL = ("LUDB 1 (annotated)", "PTB-XL 00001_lr (consensus)")


def rng_for(seed: int, name: str, i: int = 0) -> np.random.Generator:
  """A class's draws depend only on the seed, the class and the lead (not on which other classes run)."""
  return np.random.default_rng([seed, zlib.crc32(name.encode()), i])


# --------------------------------------------------------------------------------------------------------------
# the run


@dataclasses.dataclass
class ClassResult:
  name: str
  kind: str  # "annotated", "consensus", "perturbed", "no truth"
  cases: list[Case]
  calls: dict  # detector -> list[Call], one per case

  def totals(self, det: str) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for c, call in zip(self.cases, self.calls[det]):
      a, b, d = score(call.indices, c.truth, TOL_S * c.fs, c.optional, c.ignore)
      tp, fp, fn = tp + a, fp + b, fn + d
    return tp, fp, fn


def _selected(names, wanted):
  return [n for n in names if not wanted or any(w.lower() in n.lower() for w in wanted)]


def _pct(v) -> str:
  return "-" if v is None else f"{100 * v:.2f}"


def cell(r: ClassResult, det: str) -> str:
  tp, fp, fn = r.totals(det)
  errs = sum(c.error is not None for c in r.calls[det])
  mark = f" ({errs} err)" if errs else ""
  if r.kind == "no truth":
    return f"FP {fp}{mark}"
  se, ppv = rates(tp, fp, fn)
  return f"{_pct(se)} / {_pct(ppv)}{mark}"


def verdict(r: ClassResult, anchors: list[str]) -> tuple[bool, str]:
  tp, fp, fn = r.totals("echojax")
  if r.kind == "no truth":
    best = min((r.totals(a)[1] for a in anchors), default=None)
    return fp == 0, f"FP {fp} (need 0" + (f"; fewest of an anchor: {best})" if best is not None else ")")
  target = TARGET_ANNOTATED if r.kind == "annotated" else TARGET_OTHER
  se, ppv = (v or 0.0 for v in rates(tp, fp, fn))
  notes, ok = [], True
  for what, v in (("Se", se), ("PPV", ppv)):
    if v < target:
      ok = False
      notes.append(f"{what} {100 * v:.2f} < {100 * target:.1f}")
  best = max(anchors, key=lambda a: f1(*r.totals(a)), default=None)
  ref = ""
  if best is not None:
    b_se, b_ppv = (v or 0.0 for v in rates(*r.totals(best)))
    ref = f"; best anchor {best}: {100 * b_se:.2f} / {100 * b_ppv:.2f}"
    for what, mine, theirs in (("Se", se, b_se), ("PPV", ppv, b_ppv)):
      if mine < theirs - WITHIN - 1e-12:
        ok = False
        notes.append(f"{what} below {best}'s")
  return ok, (f"Se {100 * se:.2f}, PPV {100 * ppv:.2f} (target {100 * target:.1f}{ref})"
              + ("" if ok else ": " + "; ".join(notes)))


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--seed", type=int, default=0, help="perturbation / window / noise draws (default 0)")
  p.add_argument("--quick", action="store_true", help="LUDB and PTB-XL and a few classes only (seconds)")
  p.add_argument("--detector", nargs="+", choices=DETECTOR_NAMES, help="columns to run (default: all four)")
  p.add_argument("--only", nargs="+", metavar="CLASS", help="rows whose name contains one of these (any case)")
  p.add_argument("--json", help="also write every number (per class, per lead, timings, verdicts) to this file")
  return p.parse_args(argv)


@cli_main
def main(argv=None) -> None:
  args = parse_args(argv)
  dets = list(args.detector or DETECTOR_NAMES)
  anchors = [d for d in dets if d in ANCHORS]
  real_names = [n for n in REAL if not args.quick or n in QUICK_REAL]
  pert_names = [n for n, (_, q) in PERTURBATIONS.items() if not args.quick or q]
  classes = _selected(real_names + pert_names + list(SYNTHETIC), args.only)
  if not classes:
    raise UserError(f"--only {' '.join(args.only)} matches no class{' of --quick' if args.quick else ''}; classes: "
                    f"{', '.join(REAL)}, {', '.join(PERTURBATIONS)}, {', '.join(SYNTHETIC)}")
  t_start = time.perf_counter()
  import neurokit2 as nk  # imported before any timing (seconds)
  import scipy
  import wfdb
  from wfdb import processing  # noqa: F401

  import echojax.data.ecg  # noqa: F401

  ludb = ludb_cases()
  warm = ludb[1]
  for d in DETECTOR_NAMES:  # untimed warm-up: first calls, lazy imports, caches
    run_detector(d, warm.x, warm.fs)
  print(f"R-peak detectors, tolerance {TOL_S * 1000:.0f} ms, seed {args.seed}{', quick' if args.quick else ''}; "
        f"neurokit2 {nk.__version__}, wfdb {wfdb.__version__}, numpy {np.__version__}, scipy {scipy.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)

  # real records: LUDB annotated, PTB / PTB-XL against the anchors' consensus (their anchor calls reused)
  anchor_calls: dict = {}
  real_cases: dict[str, list[Case]] = {"ludb/1": ludb}
  ref_info: dict[str, dict] = {}
  needs_ptb = not args.quick and any(n not in REAL or REAL[n] == "ptb/s0010_re" for n in classes
                                     if n not in SYNTHETIC)
  for name, rel in REAL.items():
    if rel == "ludb/1" or not (name in classes or (rel == "ptb/s0010_re" and needs_ptb)):
      continue
    real_cases[rel], ref_info[rel] = consensus_cases(rel, anchor_calls)
    i = ref_info[rel]
    print(f"{rel}: CONSENSUS reference (not an annotation) of {i['beats']} beats, {i['dont_care']} don't care: "
          f"100 ms windows found by > half of {i['pairs']} (anchor, lead) pairs ({len(ANCHORS)} anchors x "
          f"{i['leads']} leads, {i['seconds']:g} s at {i['fs']:g} Hz)", flush=True)

  results: list[ClassResult] = []
  for name in classes:
    if name in REAL:
      kind, cases = ("annotated" if REAL[name] == "ludb/1" else "consensus"), real_cases[REAL[name]]
    elif name in SYNTHETIC:
      kind, cases = "no truth", SYNTHETIC[name](rng_for(args.seed, name))
    else:
      gen = PERTURBATIONS[name][0]
      bases = ludb + (real_cases.get("ptb/s0010_re", []) if not args.quick else [])
      kind, cases = "perturbed", [c for i, b in enumerate(bases) for c in gen(b, rng_for(args.seed, name, i))]
    calls = {}
    for d in dets:
      calls[d] = [anchor_calls[(c.label, d)] if (c.label, d) in anchor_calls else run_detector(d, c.x, c.fs)
                  for c in cases]
    results.append(ClassResult(name, kind, cases, calls))
    print(f"  {name}: {len(cases)} leads done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

  # the table
  print(f"\nSe / PPV in % (TP, FP, FN summed over the leads / copies of a class); tolerance {TOL_S * 1000:.0f} ms; "
        "rows without truth: false positives")
  print("| class | leads | beats | " + " | ".join(f"{d} Se / PPV" for d in dets) + " |")
  print("|---|---:|---:|" + "---:|" * len(dets))
  for r in results:
    beats = sum(len(c.truth) for c in r.cases)
    print(f"| {r.name} | {len(r.cases)} | {beats} | " + " | ".join(cell(r, d) for d in dets) + " |")
  time_s = {d: sum(c.seconds for r in results for c in r.calls[d]) for d in dets}
  minutes = {d: sum(c.minutes for r in results for c in r.cases) for d in dets}
  per_min = {d: time_s[d] / minutes[d] if minutes[d] else float("nan") for d in dets}
  print("| time, s per minute of signal | | | " + " | ".join(f"{per_min[d]:.4f}" for d in dets) + " |")

  errors = [(r.name, d, sum(c.error is not None for c in r.calls[d]), len(r.cases),
             next(c.error for c in r.calls[d] if c.error)) for r in results for d in dets
            if any(c.error for c in r.calls[d])]
  if errors:
    print("\ndetector errors (counted as no detections):")
    for name, d, n, total, msg in errors:
      print(f"  {d} on {name}: {n}/{total} calls raised, e.g. {msg}")

  verdicts, fails = {}, []
  if "echojax" in dets:
    print("\nverdict for echojax" + ("" if anchors else " (no anchors run: targets only)") + ":")
    for r in results:
      ok, why = verdict(r, anchors)
      verdicts[r.name] = {"pass": ok, "why": why}
      fails += [] if ok else [r.name]
      print(f"  {r.name}: {'PASS' if ok else 'FAIL'}: {why}")
      if not ok:
        worst = []
        for c, call in zip(r.cases, r.calls["echojax"]):
          tp, fp, fn = score(call.indices, c.truth, TOL_S * c.fs, c.optional, c.ignore)
          if fp or fn:
            worst.append((fp + fn, f"{c.label} TP {tp} FP {fp} FN {fn}"))
        for _, s in sorted(worst, key=lambda w: -w[0])[:4]:
          print(f"      {s}")
    if "neurokit2" in dets:
      ratio = per_min["echojax"] / per_min["neurokit2"]
      ok = ratio <= MAX_TIME_RATIO
      verdicts["time"] = {"pass": ok, "ratio_to_neurokit2": ratio}
      fails += [] if ok else ["time"]
      print(f"  time: {'PASS' if ok else 'FAIL'}: {per_min['echojax']:.4f} s/min = {ratio:.2f}x neurokit2's "
            f"{per_min['neurokit2']:.4f} (limit {MAX_TIME_RATIO:g}x)")
    print(f"echojax fails: {', '.join(fails) if fails else 'none'}")
  print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)

  if args.json:
    out = {"seed": args.seed, "quick": args.quick, "tol_s": TOL_S, "detectors": dets,
           "versions": {"neurokit2": nk.__version__, "wfdb": wfdb.__version__, "numpy": np.__version__,
                        "scipy": scipy.__version__},
           "consensus": ref_info,
           "time": {d: {"seconds": time_s[d], "minutes": minutes[d], "s_per_min": per_min[d]} for d in dets},
           "classes": [], "verdicts": verdicts, "echojax_fails": fails}
    for r in results:
      scores = {}
      for d in dets:
        tp, fp, fn = r.totals(d)
        se, ppv = rates(tp, fp, fn)
        scores[d] = {"tp": tp, "fp": fp, "fn": fn, "se": se, "ppv": ppv,
                     "errors": sum(c.error is not None for c in r.calls[d]),
                     "error": next((c.error for c in r.calls[d] if c.error), None)}
      leads = [{"label": c.label, "fs": c.fs, "seconds": len(c.x) / c.fs, "truth": len(c.truth),
                "dont_care": len(c.optional),
                "scores": {d: list(score(r.calls[d][i].indices, c.truth, TOL_S * c.fs, c.optional, c.ignore))
                           for d in dets}}
               for i, c in enumerate(r.cases)]
      out["classes"].append({"name": r.name, "kind": r.kind, "leads": len(r.cases),
                             "beats": sum(len(c.truth) for c in r.cases), "scores": scores, "cases": leads})
    Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
