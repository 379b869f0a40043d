"""Frame-sampler registry: data configs pick ``fn(record, rng) -> frame indices`` by name (``data.frame_sampler``).

The built-in ECG phase samplers are found by name without registering them first: ``ecg_phases_<N>`` (N in
``echojax.data.ecg.PHASE_SAMPLER_FRAMES``: N/2 frames per phase, :class:`echojax.data.ecg.PhaseFrameSampler`) for
video models, and ``ecg_phase_frame`` (one frame at an ECG-derived cardiac phase, :class:`OnePhaseFrame`) for image
models over cines.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from echojax.errors import UserError

FrameSampler = Callable[[Mapping[str, Any], np.random.Generator], np.ndarray]
_FRAME_SAMPLERS: dict[str, FrameSampler] = {}
ECG_PREFIX = "ecg_phases_"  # the built-in ECG phase samplers
PHASE_FRAME = "ecg_phase_frame"  # the built-in one-frame ECG phase sampler (image models over cines)
PHASE_FRAME_K = 4  # its phases per cycle: ED, ES and 3 between each (the 2K frames of sample_phase_frames)


def register_frame_sampler(name: str, fn: FrameSampler | None = None):
  """Register ``fn(record, rng) -> int frame indices`` under ``name`` (usable as a decorator).

  Data configs pick it with ``frame_sampler=name``. The function must be importable (module level) so grain
  worker processes can pickle it. It gets the decoded record (``video`` uint8 (T,H,W,C), ``num_frames``, and any
  other stored features, e.g. ECG R-peaks) and, in training, a per-sample ``np.random.Generator`` (deterministic for
  the loader seed and the sample's position); evaluation loaders pass ``None``, and the sampler must then choose
  deterministically, so every evaluation sees the same frames. For the video preset it must return ``frames``
  indices; for the image preset 1.
  """

  def deco(f):
    _FRAME_SAMPLERS[name] = f
    return f

  return deco(fn) if fn is not None else deco


def get_frame_sampler(name: str) -> FrameSampler:
  """The sampler registered as ``name``; the built-in ECG samplers are registered on the first lookup of one."""
  if name not in _FRAME_SAMPLERS and (str(name).startswith(ECG_PREFIX) or name == PHASE_FRAME):
    register_builtin_samplers()
  if name not in _FRAME_SAMPLERS:
    raise UserError(f"unknown frame sampler {name!r} (config field data.frame_sampler); registered: "
                    f"{', '.join(sorted(_FRAME_SAMPLERS)) or 'none'}. Register one with "
                    "echojax.data.pipeline.register_frame_sampler(name, fn) in an imported module.")
  return _FRAME_SAMPLERS[name]


class OnePhaseFrame:
  """One frame of a cine at an ECG-derived cardiac phase: ``sampler(record, rng) -> int (1,)``, for the image
  preset over video records (the frame becomes the batch's ``image``, exactly like a stored still).

  ``phases`` is a phase sampler (``PhaseFrameSampler``: 2K frames of one cycle, index 0 = ED, index K = ES).
  Training (``rng`` a Generator): one of those 2K frames at random, from the cycle it picks at random, so every
  phase from ED through ES and back is drawn. Evaluation (``rng=None``): its first frame, the ED frame of the cycle
  the phase sampler takes in evaluation (the first one), deterministic. Cines without a usable cycle get what the
  phase sampler falls back to (uniform frames). Module level, so grain workers can pickle it.
  """

  def __init__(self, phases: FrameSampler):
    self.phases = phases

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
    idx = np.asarray(self.phases(record, rng))
    return idx[:1] if rng is None else idx[[int(rng.integers(len(idx)))]]


def register_builtin_samplers() -> None:
  """Registers the ECG phase samplers: ``ecg_phases_<N>`` (N/2 frames per phase, N in PHASE_SAMPLER_FRAMES) and
  ``ecg_phase_frame`` (one of the PHASE_FRAME_K-per-phase frames)."""
  from echojax.data.ecg.sampler import PHASE_SAMPLER_FRAMES, PhaseFrameSampler, phase_sampler_name

  for n in PHASE_SAMPLER_FRAMES:
    _FRAME_SAMPLERS[phase_sampler_name(n)] = PhaseFrameSampler(n // 2)
  _FRAME_SAMPLERS[PHASE_FRAME] = OnePhaseFrame(PhaseFrameSampler(PHASE_FRAME_K))
