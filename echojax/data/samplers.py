"""Frame-sampler registry: data configs pick ``fn(record, rng) -> frame indices`` by name (``data.frame_sampler``).

The built-in ECG phase samplers (``ecg_phases_<N>``, N in ``echojax.data.ecg.PHASE_SAMPLER_FRAMES``: N/2 frames
per phase, :class:`echojax.data.ecg.PhaseFrameSampler`) are found by name without registering them first.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from echojax.errors import UserError

FrameSampler = Callable[[Mapping[str, Any], np.random.Generator], np.ndarray]
_FRAME_SAMPLERS: dict[str, FrameSampler] = {}
ECG_PREFIX = "ecg_phases_"  # the built-in ECG phase samplers


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
  """The sampler registered as ``name``; the built-in ``ecg_phases_<N>`` are registered on their first lookup."""
  if name not in _FRAME_SAMPLERS and str(name).startswith(ECG_PREFIX):
    register_builtin_samplers()
  if name not in _FRAME_SAMPLERS:
    raise UserError(f"unknown frame sampler {name!r} (config field data.frame_sampler); registered: "
                    f"{', '.join(sorted(_FRAME_SAMPLERS)) or 'none'}. Register one with "
                    "echojax.data.pipeline.register_frame_sampler(name, fn) in an imported module.")
  return _FRAME_SAMPLERS[name]


def register_builtin_samplers() -> None:
  """Registers the ECG phase samplers ``ecg_phases_<N>`` (N/2 frames per phase, N in PHASE_SAMPLER_FRAMES)."""
  from echojax.data.ecg.sampler import PHASE_SAMPLER_FRAMES, PhaseFrameSampler, phase_sampler_name

  for n in PHASE_SAMPLER_FRAMES:
    _FRAME_SAMPLERS[phase_sampler_name(n)] = PhaseFrameSampler(n // 2)
