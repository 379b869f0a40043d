"""Frame-sampler registry: data configs pick ``fn(record, rng) -> frame indices`` by name (``data.frame_sampler``).

The built-in ECG phase samplers (``ecg_phases_4/8/16/32``, :func:`echojax.data.ecg.register_phase_samplers`) are
found by name without registering them first: a lookup of an unregistered ``ecg_phases_*`` name registers them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from echojax.errors import UserError

FrameSampler = Callable[[Mapping[str, Any], np.random.Generator], np.ndarray]
_FRAME_SAMPLERS: dict[str, FrameSampler] = {}
ECG_PREFIX = "ecg_phases_"  # names that echojax.data.ecg.register_phase_samplers() registers


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
    from echojax.data import ecg

    ecg.register_phase_samplers()
  if name not in _FRAME_SAMPLERS:
    raise UserError(f"unknown frame sampler {name!r} (config field data.frame_sampler); registered: "
                    f"{', '.join(sorted(_FRAME_SAMPLERS)) or 'none'}. Register one with "
                    "echojax.data.pipeline.register_frame_sampler(name, fn) in an imported module.")
  return _FRAME_SAMPLERS[name]
