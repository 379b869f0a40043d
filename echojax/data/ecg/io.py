"""ECG files of the raw echo layouts: reading, writing, alignment to the video clock, finding one beside a cine.

* :func:`read_ecg_file` -- one lead of a CSV ``time_s,ecg_mv`` or a WFDB record (``.hea``, ``.dat`` or ``.mat``
  path, resolved to its header), as an :class:`EcgTrace`:

  - WFDB: the lead by signal quality (:func:`echojax.data.ecg.quality.lead_scores` over the voltage channels at a
    common rate; on a tie lead II, else the first), or the one named by ``lead=``; at its native rate (multi-rate
    records and several samples per frame are not averaged down to the frame rate); ``fs`` as the header writes it.
  - CSV: ``fs`` from the span of ``time_s``, snapped to the simplest rate p/q (q <= 1000) that the written times
    allow: the rate whose span lies within one unit of the column's precision (its most common number of decimals)
    of the written one. So 250, 360 or 1000/3 Hz read back exactly, also from a 6-decimal column.
  - Missing samples (NaN; in a CSV an empty, ``nan`` or ``inf`` value): runs up to
    :data:`~echojax.data.ecg.quality.MAX_GAP_S` are linearly interpolated, longer ones kept as NaN (the detector and
    the quality module mark them unusable); the trace's ``notes`` say so. Only a lead with no finite sample is
    refused.
  - Bad input raises :class:`EcgReadError` (a UserError) naming the file and the field, never a library traceback.

* :func:`write_ecg_csv` -- one lead as that CSV (9 decimals of time: any rate reads back exactly).
* :func:`align_to_video` -- shift, edge-pad (at most ``tol_s``) and cut a trace so that sample 0 is at the cine's
  first frame (NaN gaps carried through); a reason instead when it does not cover the cine.
* :func:`find_ecg_file` -- ``<stem>.csv`` or ``<stem>.hea`` (whatever its signal file: .dat, .mat) beside a video.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import numpy as np

from echojax.data.ecg.detect import MIN_FS
from echojax.data.ecg.quality import MAX_GAP_S, fill_gaps, lead_scores, nan_runs
from echojax.errors import UserError

ECG_CSV_HEADER = "time_s,ecg_mv"
WFDB_SUFFIXES = (".hea", ".dat", ".mat")
VOLTAGE_UNITS = ("v", "mv", "uv", "nv")  # WFDB units of ECG channels (lower case, micro as u)
MAX_RATE_DENOMINATOR = 1000  # CSV rates are snapped to p/q with q up to this


# --------------------------------------------------------------------------------------------------------------
# ECG files


class EcgReadError(UserError):
  """An ECG file could not be read or parsed: ``"<path>: <reason>"`` (the reason names the row or field)."""

  def __init__(self, path: str | Path, reason: str):
    self.path = str(path)
    self.reason = reason
    super().__init__(f"{self.path}: {reason}")

  def __reduce__(self):
    return type(self), (self.path, self.reason)


@dataclasses.dataclass(frozen=True)
class EcgTrace:
  """One ECG lead: ``signal`` float32 (N,) in mV, sampled at ``fs`` Hz; its first sample is at ``start_s`` on the
  video clock (0 = the first frame; a CSV whose ``time_s`` starts at -0.5 began recording half a second early).
  NaN samples are gaps longer than :data:`~echojax.data.ecg.quality.MAX_GAP_S`. ``lead``: the WFDB channel's name
  ("" for a CSV); ``notes``: what the reader fixed up or chose (gaps bridged or kept, a lead other than II)."""

  signal: np.ndarray
  fs: float
  start_s: float = 0.0
  lead: str = ""
  notes: tuple[str, ...] = ()

  @property
  def duration_s(self) -> float:
    return len(self.signal) / self.fs


def write_ecg_csv(path: str | Path, ecg: np.ndarray, fs: float, start_s: float = 0.0) -> None:
  """Write one lead as the documented CSV: header ``time_s,ecg_mv``, then one ``time,value`` row per sample
  (``time_s`` on the video clock: 0 = first frame; ``start_s`` = time of the first sample; 9 decimals, so
  :func:`read_ecg_file` gives ``fs`` back exactly; NaN samples are written ``nan``)."""
  f = float(fs)
  if not math.isfinite(f) or f <= 0:
    raise UserError(f"{path}: ECG sampling rate must be a finite number > 0 Hz; got {fs!r}")
  ecg = np.asarray(ecg, np.float64).reshape(-1)
  t = start_s + np.arange(len(ecg)) / f
  with open(path, "w") as fh:
    fh.write(ECG_CSV_HEADER + "\n")
    for ti, vi in zip(t, ecg):
      fh.write(f"{ti:.9f},{vi:.5f}\n")


def _bridge_gaps(x: np.ndarray, fs: float) -> tuple[np.ndarray, list[str]]:
  """NaN runs up to MAX_GAP_S linearly interpolated, longer ones kept; notes saying which (none without gaps)."""
  runs = nan_runs(x)
  if not runs:
    return x, []
  short = [(a, b) for a, b in runs if (b - a) / fs <= MAX_GAP_S]
  long = [(a, b) for a, b in runs if (b - a) / fs > MAX_GAP_S]
  out = fill_gaps(x)
  for a, b in long:
    out[a:b] = np.nan
  notes = []
  if short:
    n = sum(b - a for a, b in short)
    notes.append(f"{n} missing sample{'s' * (n != 1)} in {len(short)} gap{'s' * (len(short) != 1)} of up to "
                 f"{max(b - a for a, b in short) / fs:.3f} s interpolated")
  if long:
    secs = sum(b - a for a, b in long) / fs
    notes.append(f"{len(long)} gap{'s' * (len(long) != 1)} longer than {MAX_GAP_S:g} s ({secs:.2f} s in all) kept "
                 "as missing samples (NaN; unusable for R peaks)")
  return out, notes


def _csv_rate(n: int, first: Decimal, last: Decimal, quantum: Decimal) -> float:
  """The rate of ``n`` samples whose written times span ``first`` to ``last`` (each rounded to ``quantum``): the p/q
  with the smallest q (<= MAX_RATE_DENOMINATOR; p nearest the measured rate) whose span (n - 1) / (p / q) lies within
  ``quantum`` of the written span; the measured rate (n - 1) / span when none does."""
  span, q = Fraction(last - first), Fraction(quantum)
  measured = (n - 1) / span
  lo = (n - 1) / (span + q)
  hi = (n - 1) / (span - q) if span > q else math.inf
  for den in range(1, MAX_RATE_DENOMINATOR + 1):
    p = round(measured * den)
    if p > 0 and lo <= Fraction(p, den) <= hi:
      return p / den
  return float(measured)


def _read_ecg_csv(path: Path) -> EcgTrace:
  """Parse the ``time_s,ecg_mv`` CSV; sampling rate from the (uniform) time column (module docstring)."""
  try:
    lines = path.read_text(encoding="utf-8-sig").strip().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise EcgReadError(path, f"cannot read the ECG CSV: {e}") from None
  if not lines:
    raise EcgReadError(path, "ECG CSV is empty (expected a header 'time_s,ecg_mv' and one row per sample)")
  header = [h.strip().lower() for h in lines[0].split(",")]
  if header != ["time_s", "ecg_mv"]:
    raise EcgReadError(path, f"ECG CSV header is {lines[0]!r}; expected 'time_s,ecg_mv'")
  if len(lines) < 3:
    raise EcgReadError(path, f"ECG CSV has {len(lines) - 1} sample row{'s' * (len(lines) != 2)}; need at least 2")
  times: list[Decimal] = []
  vals = np.empty(len(lines) - 1)
  for i, line in enumerate(lines[1:], start=1):
    parts = line.split(",")
    if len(parts) != 2:
      raise EcgReadError(path, f"ECG CSV row {i} is {line.strip()!r}: {len(parts)} field{'s' * (len(parts) != 1)}; "
                               "expected two, 'time_s,ecg_mv'")
    try:
      t = Decimal(parts[0])
    except InvalidOperation:
      t = None
    if t is None or not t.is_finite():
      raise EcgReadError(path, f"ECG CSV row {i}: time_s is {parts[0].strip()!r}; expected a number of seconds")
    times.append(t)
    v = parts[1].strip()
    try:
      vals[i - 1] = float(v) if v else np.nan  # empty, nan or inf: a missing sample
    except ValueError:
      raise EcgReadError(path, f"ECG CSV row {i}: ecg_mv is {v!r}; expected a number (or empty / nan for a "
                               "missing sample)") from None
  t = np.array([float(x) for x in times])
  dt = np.diff(t)
  if np.any(dt <= 0):
    row = int(np.flatnonzero(dt <= 0)[0]) + 2
    raise EcgReadError(path, f"ECG CSV time_s is not strictly increasing at row {row}")
  quantum = Decimal(1).scaleb(Counter(x.as_tuple().exponent for x in times).most_common(1)[0][0])
  step = float(np.median(dt))
  if np.max(np.abs(dt - step)) > 0.05 * step + max(float(quantum), 2e-6):
    row = int(np.argmax(np.abs(dt - step))) + 2
    raise EcgReadError(path, f"ECG CSV time_s is not uniformly spaced (row {row}; resample to a fixed rate)")
  fs = _csv_rate(len(times), times[0], times[-1], quantum)
  if not np.isfinite(vals).any():
    raise EcgReadError(path, "ECG CSV has no finite ecg_mv value")
  sig, notes = _bridge_gaps(vals, fs)
  return EcgTrace(sig.astype(np.float32), fs, float(times[0]), "", tuple(notes))


def _wfdb_header(path: Path) -> Path:
  """The ``.hea`` of a WFDB record given as its header, signal file (.dat, .mat) or record name."""
  hea = path.with_suffix(".hea") if path.suffix.lower() in WFDB_SUFFIXES else path.with_name(path.name + ".hea")
  if not hea.exists():
    raise EcgReadError(path, f"WFDB header {hea.name} not found beside it (a WFDB record is read through its header)")
  return hea


def _check_wfdb_header(path: Path, hea: Path) -> float:
  """Check the header's record line (nsig, fs, nsamp) and its signal files, which wfdb reads leniently: it takes an
  unparsable fs as 250 Hz, or the sample count as fs when fs is missing. Returns fs."""
  try:
    text = hea.read_text(errors="replace")
  except OSError as e:
    raise EcgReadError(path, f"cannot read the WFDB header {hea.name}: {e}") from None
  lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
  if not lines:
    raise EcgReadError(path, f"WFDB header {hea.name} has no record line ('name nsig fs nsamp')")
  tok = lines[0].split()
  where = f"WFDB header {hea.name} record line {lines[0]!r}"
  if len(tok) < 2 or not tok[1].isdigit() or int(tok[1]) < 1:
    raise EcgReadError(path, f"{where}: field nsig (number of signals, 2nd) must be a whole number >= 1")
  fs = 250.0  # the WFDB default when the field is absent
  if len(tok) >= 3:
    m = re.fullmatch(r"(\d+\.?\d*|\.\d+)([/(].*)?", tok[2])  # fs[/counter_freq[(base_counter)]], as wfdb parses it
    fs = float(m.group(1)) if m else math.nan
    if not math.isfinite(fs) or fs <= 0:
      raise EcgReadError(path, f"{where}: field fs (sampling frequency, 3rd) is {tok[2]!r}; expected a number > 0 Hz "
                               "(digits, e.g. 250 or 360.0)")
  if len(tok) >= 4 and not tok[3].isdigit():
    raise EcgReadError(path, f"{where}: field nsamp (samples per signal, 4th) is {tok[3]!r}; expected a whole number")
  if "/" in tok[0]:
    return fs  # a multi-segment record: segment lines, not signal lines, follow
  nsig = int(tok[1])
  if len(lines) < 1 + nsig:
    raise EcgReadError(path, f"WFDB header {hea.name} declares {nsig} signals (field nsig) but has "
                             f"{len(lines) - 1} signal lines")
  for ln in lines[1 : 1 + nsig]:
    fname = ln.split()[0]
    if fname != "~" and not (hea.parent / fname).exists():
      raise EcgReadError(path, f"signal file {fname} named in WFDB header {hea.name} (field file_name) not found")
  return fs


def _is_voltage(unit) -> bool:
  return str(unit or "").strip().lower().replace("µ", "u").replace("μ", "u") in VOLTAGE_UNITS


def _common_rate_scores(sigs: list[np.ndarray], rates: list[float]) -> np.ndarray:
  """:func:`lead_scores` of leads sampled at different rates, all linearly interpolated onto the fastest one's grid;
  zeros (no preference) for records too short or too coarse to score."""
  f = max(rates)
  n = min(int(len(s) / r * f) for s, r in zip(sigs, rates))
  if f < MIN_FS or n < f:
    return np.zeros(len(sigs))
  if all(r == f for r in rates):
    x = np.column_stack([s[:n] for s in sigs])
  else:
    t = np.arange(n) / f
    x = np.column_stack([np.interp(t, np.arange(len(s)) / r, s) for s, r in zip(sigs, rates)])
  return lead_scores(x, f)


def _read_ecg_wfdb(path: Path, lead: str | None) -> EcgTrace:
  """Read one lead of a WFDB record at its native rate (module docstring)."""
  import wfdb

  hea = _wfdb_header(path)
  fs = _check_wfdb_header(path, hea)
  try:
    rec = wfdb.rdrecord(str(hea.with_suffix("")), smooth_frames=False)
  except Exception as e:  # wfdb raises many types on malformed headers / data
    raise EcgReadError(path, f"cannot read the WFDB record: {type(e).__name__}: {e}") from None
  if float(rec.fs) != fs:
    raise EcgReadError(path, f"WFDB header {hea.name}: field fs reads as {rec.fs!r} by wfdb but is written {fs:g}")
  sigs = [np.asarray(s, np.float64).reshape(-1) for s in (rec.e_p_signal or [])]
  if not sigs:
    raise EcgReadError(path, "WFDB record has no signals")
  names = [str(n).strip() for n in (rec.sig_name or [""] * len(sigs))]
  units = list(rec.units or [""] * len(sigs))
  spf = list(rec.samps_per_frame or [1] * len(sigs))
  rates = [float(rec.fs) * int(k) for k in spf]
  low = [n.lower() for n in names]
  if lead is not None:
    if lead.strip().lower() not in low:
      raise EcgReadError(path, f"WFDB record has no lead {lead!r} (field sig_name); its leads: "
                               f"{', '.join(n or repr(n) for n in names)}")
    cands = [low.index(lead.strip().lower())]
  else:
    cands = [i for i, u in enumerate(units) if _is_voltage(u)] or list(range(len(sigs)))
  if all(len(sigs[i]) < 2 for i in cands):
    n, i = len(sigs[cands[0]]), cands[0]
    raise EcgReadError(path, f"WFDB record has {n} sample{'s' * (n != 1)} in lead {names[i] or i} (field nsamp); "
                             "need at least 2")
  cands = [i for i in cands if len(sigs[i]) >= 2]
  live = [i for i in cands if np.isfinite(sigs[i]).any()]
  if not live:
    which = f"lead {names[cands[0]] or cands[0]}" if len(cands) == 1 else "any lead"
    raise EcgReadError(path, f"WFDB record has no finite sample in {which} (all missing)")
  bridged = {i: _bridge_gaps(sigs[i], rates[i]) for i in live}
  notes: list[str] = []
  if len(live) == 1:
    ch = live[0]
  else:
    scores = _common_rate_scores([bridged[i][0] for i in live], [rates[i] for i in live])
    top = [i for i, s in zip(live, scores) if s >= scores.max() - 1e-12]
    ch = next((i for i in top if low[i] == "ii"), top[0])
    if "ii" in low and low[ch] != "ii":
      ii = low.index("ii")
      was = (f"score {scores[live.index(ii)]:.2f}" if ii in live else "no finite sample" if ii in cands
             else f"units {units[ii]!r}, not a voltage")
      notes.append(f"lead {names[ch]} picked by signal quality (score {scores[live.index(ch)]:.2f}; lead II: {was})")
  sig, gap_notes = bridged[ch]
  return EcgTrace(sig.astype(np.float32), rates[ch], 0.0, names[ch], tuple(notes + gap_notes))


def read_ecg_file(path: str | Path, lead: str | None = None) -> EcgTrace:
  """One lead of an ECG file of the raw echo layouts: ``.csv`` (``time_s,ecg_mv``) or a WFDB record (its ``.hea``,
  ``.dat`` or ``.mat``): rules in the module docstring.

  ``lead``: the WFDB channel to read by name (case-insensitive), instead of the best by signal quality.
  Raises EcgReadError (a UserError) naming the file and the row or field.
  """
  path = Path(path)
  suffix = path.suffix.lower()
  if suffix == ".csv":
    if not path.exists():
      raise EcgReadError(path, "file not found")
    if lead is not None:
      raise EcgReadError(path, f"lead={lead!r} names a WFDB channel; an ECG CSV 'time_s,ecg_mv' holds one unnamed lead")
    return _read_ecg_csv(path)
  if suffix in WFDB_SUFFIXES or (not path.exists() and path.with_name(path.name + ".hea").exists()):
    if suffix in WFDB_SUFFIXES and not path.exists():
      raise EcgReadError(path, "file not found")
    return _read_ecg_wfdb(path, lead)
  if not path.exists():
    raise EcgReadError(path, "file not found")
  raise EcgReadError(path, f"unknown ECG file type {path.suffix!r} (use .csv 'time_s,ecg_mv' or a WFDB record: "
                           ".hea with its .dat or .mat)")


def align_to_video(trace: EcgTrace, num_frames: int, fps: float, tol_s: float) -> tuple[np.ndarray, str | None]:
  """Shift an ECG so that its sample 0 is at the cine's first frame (cutting samples recorded before it, or
  edge-padding by at most ``tol_s``), and cut what runs more than ``tol_s`` past the cine's end.

  Returns (signal, None), or (empty, reason) when the ECG does not cover [0, num_frames / fps) to within
  ``tol_s`` at either end. A trace that starts at 0 and ends within ``tol_s`` of the cine is returned unchanged.
  NaN samples (long gaps) are carried through as they are.
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
  """The ECG beside a video (same stem): ``<stem>.csv`` or the WFDB header ``<stem>.hea`` (its signal file .dat or
  .mat); None when there is none."""
  video_path = Path(video_path)
  for ext in (".csv", ".hea"):
    p = video_path.with_suffix(ext)
    if p.exists():
      return p
  return None
