"""Phase-aware frame sampling for the grain pipeline: K frames of systole then K of diastole from one cycle.

* :func:`sample_phase_frames` -- K frames of systole (ED -> ES) then K of diastole (ES -> next ED) from one
  cycle: a fixed output length ``2K`` in time order, index 0 = ED and index K = ES, deterministic for a seed.
* :class:`PhaseFrameSampler` -- a callable ``(record dict, numpy Generator) -> int32 indices`` for the grain
  pipeline; uses stored ``r_peaks``, else the stored ECG (quality-gated), else the intensity cycle, else uniform
  sampling -- the first source with a plausible cycle -- and counts and logs each fallback with its reason.
* the ``ecg_phases_<N>`` samplers are found by name by :mod:`echojax.data.samplers` (built in),
  N in :data:`PHASE_SAMPLER_FRAMES`; :func:`phase_sampler_name` gives the name for N frames.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any, Mapping

import numpy as np

from echojax.data.ecg.phases import (DEFAULT_QTC_S, CardiacPhases, ecg_phases, intensity_phases,
                                     phases_from_r_peak_frames)
from echojax.errors import UserError

_LOG = logging.getLogger("echojax.data.ecg")

# Frame counts N of the ``ecg_phases_<N>`` samplers (N/2 frames per phase), built into echojax.data.samplers.
PHASE_SAMPLER_FRAMES = (4, 8, 16, 32)


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


_SOURCES = ("auto", "r_peaks", "ecg", "intensity", "uniform")


def record_phases(record: Mapping[str, Any], *, source: str = "auto", qtc_s: float = DEFAULT_QTC_S) -> CardiacPhases:
  """Cardiac phases of a dataset record (keys of the ``echo_views`` videos config / EchoNet records).

  ``source``: ``"auto"`` tries stored ``r_peaks``, then the stored ``ecg`` + ``ecg_fs`` (quality-gated), then the
  intensity cycle of ``video``, and takes the first that gives a plausible cycle; the result's ``reason`` says why
  each earlier one was passed over. ``"r_peaks"``, ``"ecg"`` or ``"intensity"`` use that source only;
  ``"uniform"``: no phases.
  """
  if source not in _SOURCES:
    raise UserError(f"unknown phase source {source!r}; use {', '.join(_SOURCES)}")
  video = record.get("video")
  num_frames = int(record["num_frames"]) if "num_frames" in record else len(video)
  fps = float(record.get("fps", 0.0) or 0.0)
  empty = np.zeros(0, np.int64)
  if source == "uniform":
    return CardiacPhases(empty, empty, "none", reason="uniform sampling asked for")
  tried: list[str] = []
  found = None
  r = record.get("r_peaks")
  ecg, ecg_fs = record.get("ecg"), float(record.get("ecg_fs", 0.0) or 0.0)
  for src in ("r_peaks", "ecg", "intensity"):
    if source not in ("auto", src):
      continue
    if src == "r_peaks" and r is not None and len(r) > 0 and fps > 0:
      ph = phases_from_r_peak_frames(np.asarray(r), num_frames, fps, qtc_s)
    elif src == "ecg" and ecg is not None and len(ecg) > 0 and ecg_fs > 0 and fps > 0:
      try:
        ph = ecg_phases(np.asarray(ecg), ecg_fs, num_frames, fps, qtc_s=qtc_s)
      except UserError as e:  # an ECG too short or too coarse to read: say so, and try the next source
        tried.append(f"ecg: {e}")
        continue
    elif src == "intensity" and video is not None:
      ph = intensity_phases(np.asarray(video))
      if not ph.cycles(num_frames):
        ph = dataclasses.replace(ph, reason=ph.reason or "no periodic intensity cycle")
    else:
      continue
    if ph.cycles(num_frames):
      found = ph
      break
    tried.append(f"{src}: {ph.reason or 'no complete cycle inside the video'}")
  if found is None:
    found = CardiacPhases(empty, empty, "none")
  return dataclasses.replace(found, reason="; ".join(tried + ([found.reason] if found.reason else [])))


class PhaseFrameSampler:
  """Frame-index sampler for the grain pipeline: ``sampler(record, rng) -> int32 (2K,)`` frame indices.

  ``record`` is a decoded dataset record (needs ``video`` or ``num_frames``; uses ``fps``, ``r_peaks``,
  ``ecg``/``ecg_fs`` when present); ``rng`` a numpy Generator (pass None in eval for the first cycle, evenly
  spaced). Output length is always ``2 * k_per_phase``, so batches keep a fixed shape.

  When a record falls back (to the intensity cycle, or to uniform sampling) the sampler counts it in
  ``fallbacks`` (per process: ``{"intensity": n, "uniform": n}``) and logs the reason on the ``echojax.data.ecg``
  logger: a warning the first time per kind of fallback, then at debug level.
  """

  def __init__(self, k_per_phase: int = 8, *, source: str = "auto", qtc_s: float = DEFAULT_QTC_S,
               random_cycle: bool = True):
    if k_per_phase < 1:
      raise UserError(f"k_per_phase must be >= 1; got {k_per_phase}")
    if source not in _SOURCES:
      raise UserError(f"unknown phase source {source!r}; use {', '.join(_SOURCES)}")
    self.k_per_phase = k_per_phase
    self.source = source
    self.qtc_s = qtc_s
    self.random_cycle = random_cycle
    self.fallbacks: collections.Counter = collections.Counter()

  @property
  def num_frames_out(self) -> int:
    return 2 * self.k_per_phase

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
    num_frames = int(record["num_frames"]) if "num_frames" in record else len(record["video"])
    phases = record_phases(record, source=self.source, qtc_s=self.qtc_s)
    if self.source == "auto" and phases.source in ("intensity", "none"):
      kind = "intensity" if phases.source == "intensity" else "uniform"
      self.fallbacks[kind] += 1
      name = _record_name(record)
      level = logging.WARNING if self.fallbacks[kind] == 1 else logging.DEBUG
      _LOG.log(level, "%s: phase sampling falls back to %s (%s)%s", name, kind, phases.reason or "no ECG",
               "; later fallbacks of this kind are logged at debug level" if level == logging.WARNING else "")
    return sample_phase_frames(phases, num_frames, self.k_per_phase, rng, random_cycle=self.random_cycle)


def _record_name(record: Mapping[str, Any]) -> str:
  for key in ("file", "filename", "id", "path"):
    v = record.get(key)
    if v is not None:
      return v.decode() if isinstance(v, bytes) else str(v)
  return "a record"


def phase_sampler_name(frames: int) -> str:
  """The registered name of the phase sampler giving ``frames`` frames: ``"ecg_phases_<frames>"`` (registered
  for each of PHASE_SAMPLER_FRAMES; this function does not check that ``frames`` is one of them)."""
  return f"ecg_phases_{frames}"
