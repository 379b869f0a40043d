"""A synthetic one-lead ECG (P-QRS-T) for phantoms and tests.

Used by the echo-view phantoms (:mod:`echojax.data.synthetic.echo_views`), which write it beside each cine in
the layout :mod:`echojax.data.ecg` reads, and by the ECG tests. Numpy only; deterministic for a seed.
"""

from __future__ import annotations

import math

import numpy as np

from echojax.data.ecg import DEFAULT_QTC_S


def synthesize_ecg(
    duration_s: float,
    fs: float,
    hr_bpm: float,
    *,
    first_r_s: float = 0.2,
    qtc_s: float = DEFAULT_QTC_S,
    noise_mv: float = 0.02,
    baseline_mv: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """A P-QRS-T ECG (mV, float32 (N,)) at ``hr_bpm``; returns (signal, R-peak times in s).

  Each beat is a sum of Gaussians placed relative to its R peak (P -0.16 s, Q -0.03 s, R 0, S +0.03 s, T peak at
  0.75 of the Bazett QT so the T wave ends near R + QTc*sqrt(RR)); plus baseline wander and white noise.
  """
  rng = np.random.default_rng(rng)
  n = int(round(duration_s * fs))
  t = np.arange(n) / fs
  rr = 60.0 / hr_bpm
  r_times = np.arange(first_r_s, duration_s, rr)
  qt = qtc_s * math.sqrt(rr)
  waves = [  # (offset s, amplitude mV, width s)
      (-0.16, 0.15, 0.025),
      (-0.03, -0.12, 0.008),
      (0.0, 1.2, 0.010),
      (0.03, -0.25, 0.009),
      (0.75 * qt - 0.02, 0.35, 0.06 * math.sqrt(rr)),
  ]
  x = np.zeros(n)
  # include beats just outside the trace so its edges look like a continuing rhythm
  for r in np.concatenate([[r_times[0] - rr] if len(r_times) else [], r_times, [r_times[-1] + rr] if len(r_times) else []]):
    for off, amp, width in waves:
      x += amp * np.exp(-0.5 * ((t - r - off) / width) ** 2)
  x += baseline_mv * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
  x += noise_mv * rng.standard_normal(n)
  return x.astype(np.float32), r_times
