"""Synthetic ECGs for phantoms and tests: one lead (P-QRS-T), and 12 leads with the signs of a diagnosis.

``synthesize_ecg`` is used by the echo-view phantoms (:mod:`echojax.data.synthetic.echo_views`), which write it
beside each cine in the layout :mod:`echojax.data.ecg` reads, and by the ECG tests. ``ecg12_params`` +
``synthesize_12lead`` give the 12-lead recordings that the ECG-printout phantoms
(:mod:`echojax.data.synthetic.ecg_images`) print: waves as frontal-plane vectors (so III = II - I and the augmented
leads hold exactly) plus per-lead precordial amplitudes, with PTB-XL superclass morphology. Numpy only;
deterministic for a seed.
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
  around = [[r_times[0] - rr], r_times, [r_times[-1] + rr]] if len(r_times) else [r_times]
  for r in np.concatenate(around):
    for off, amp, width in waves:
      x += amp * np.exp(-0.5 * ((t - r - off) / width) ** 2)
  x += baseline_mv * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
  x += noise_mv * rng.standard_normal(n)
  return x.astype(np.float32), r_times


# ----------------------------------------------------------------------------------------------------------------
# 12-lead ECGs with the signs of PTB-XL's diagnostic superclasses (for the ECG-printout phantoms)

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_ANGLES_DEG = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}


def _limb(mag: float, angle_deg: float) -> np.ndarray:
  """Frontal-plane vector -> amplitudes in I, II, III, aVR, aVL, aVF (Einthoven/Goldberger: III = II - I, ...)."""
  a = math.radians(angle_deg)
  i, ii = mag * math.cos(a), mag * math.cos(a - math.pi / 3)
  return np.array([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2])


def _wave(t: float, sd: float | tuple[float, float], limb: tuple[float, float], prec) -> dict:
  """One wave of a beat: peak ``t`` s from the R peak, Gaussian width ``sd`` (or (rise, fall) for an asymmetric
  wave), frontal vector ``limb`` = (mV, degrees) and precordial amplitudes V1..V6 (mV)."""
  sd = (sd, sd) if np.isscalar(sd) else tuple(sd)
  return dict(t=t, sd=sd, amp=np.concatenate([_limb(*limb), np.asarray(prec, np.float64)]))


def ecg12_params(superclass: str, rng: np.random.Generator, variant: str | None = None) -> dict:
  """Draw one patient's 12-lead morphology for a PTB-XL superclass: the waves of a beat relative to its R peak
  and the intervals. ``variant`` picks MI's territory (``inferior``/``anterior``/``lateral``) or CD's block
  (``RBBB``/``LBBB``); drawn when None. The signs are the ones a reader looks for:

  * NORM: axis 0..+80 deg, septal q in I/aVL/V5-V6, R progression V1->V5, upright T, QRS ~90 ms.
  * MI: pathological Q waves (>= 40 ms, deep) and ST elevation with tall T in one territory, reciprocal ST
    depression opposite it (inferior: II, III, aVF; anterior: V1-V4; lateral: I, aVL, V5-V6).
  * STTC: horizontal/downsloping ST depression and inverted T in the lateral (and inferior) leads, normal QRS.
  * CD: QRS >= 120 ms: RBBB (rSR' in V1-V2, wide S in I/V5-V6, T inverted in V1-V2) or LBBB (no septal q, broad
    notched R in I/aVL/V5-V6, deep QS in V1-V3, discordant ST-T).
  * HYP: left ventricular high voltage, Sokolow-Lyon S V1 + R V5 > 3.5 mV (35 mm), with a strain pattern
    (ST depression, asymmetric T inversion in I, aVL, V5-V6) and a leftward axis.
  """
  u = rng.uniform
  if superclass not in ("NORM", "MI", "STTC", "CD", "HYP"):
    raise ValueError(f"unknown superclass {superclass!r}")
  amp = u(0.8, 1.15)  # body habitus / electrode contact
  axis = u(0.0, 80.0)
  w = u(0.92, 1.08)  # QRS width factor
  p = dict(superclass=superclass, variant=variant or "", pr_s=u(0.13, 0.19), qtc_s=u(0.38, 0.43))
  septal_prec = np.array([0.15, 0.12, 0.05, -0.03, -0.08, -0.09])
  main_prec = np.array([-0.85, -1.05, 0.35, 1.1, 1.3, 1.0]) * np.array([u(0.8, 1.1), u(0.8, 1.1), u(0.6, 1.4),
                                                                         u(0.85, 1.1), u(0.8, 1.05), u(0.8, 1.05)])
  term_prec = np.array([-0.2, -0.45, -0.55, -0.35, -0.15, -0.05])
  t_prec = np.array([u(-0.1, 0.1), 0.45, 0.5, 0.45, 0.35, 0.25]) * u(0.7, 1.2)
  qrs = [  # septal, main, terminal depolarisation
      _wave(-0.028 * w, 0.008 * w, (0.12, 170.0), septal_prec),
      _wave(0.0, 0.0095 * w, (1.1, axis), main_prec),
      _wave(0.03 * w, 0.009 * w, (0.25, -130.0), term_prec),
  ]
  st = None  # ST plateau from J to the T peak: (limb vector, precordial)
  t_wave = ((0.35 * u(0.7, 1.2), axis - u(0, 20)), t_prec)
  qrs_on, qrs_end = 0.044 * w, 0.048 * w
  if superclass == "MI":
    v = variant or ("inferior", "anterior", "lateral")[int(rng.integers(3))]
    p["variant"] = v
    depth = u(0.35, 0.6)
    if v == "inferior":  # Q in II, III, aVF; ST up there, down in I/aVL
      qrs[1] = _wave(0.0, 0.0095 * w, (0.8, u(-20.0, 10.0)), main_prec)
      qrs.append(_wave(-0.022, 0.013, (depth, -90.0), np.zeros(6)))
      st = ((u(0.15, 0.3), u(80.0, 100.0)), np.array([-0.05, -0.08, -0.04, 0.0, 0.0, 0.0]))
      t_wave = ((0.45, 85.0), t_prec)
    elif v == "anterior":  # QS in V1-V3 (poor R progression), ST up in V1-V4 (and I/aVL a little)
      qrs[0] = _wave(-0.028 * w, 0.008 * w, (0.12, 170.0), np.array([0.0, 0.0, 0.0, 0.0, -0.08, -0.09]))
      qrs[1] = _wave(0.0, 0.0095 * w, (1.0, axis), main_prec * np.array([1.0, 0.8, 0.1, 0.4, 1.0, 1.0]))
      qrs.append(_wave(-0.022, 0.013, (0.0, 0.0), -depth * np.array([0.7, 1.0, 1.0, 0.7, 0.0, 0.0])))
      st = ((0.06, -30.0), u(0.15, 0.3) / 0.3 * np.array([0.2, 0.3, 0.3, 0.2, 0.05, 0.0]))
      t_wave = ((0.3, axis), np.array([0.3, 0.7, 0.75, 0.6, 0.35, 0.25]))
    else:  # lateral: Q in I, aVL, V5, V6; ST up there, down in III
      qrs[1] = _wave(0.0, 0.0095 * w, (0.9, u(80.0, 100.0)), main_prec * np.array([1, 1, 1, 1, 0.6, 0.5]))
      qrs.append(_wave(-0.022, 0.013, (depth * 0.8, 160.0), -depth * np.array([0, 0, 0, 0.1, 0.8, 0.9])))
      st = ((u(0.15, 0.25), -25.0), np.array([0.0, 0.0, 0.0, 0.05, 0.18, 0.2]))
      t_wave = ((0.4, -20.0), t_prec * np.array([1, 1, 1, 1.1, 1.3, 1.4]))
  elif superclass == "STTC":
    k = u(0.1, 0.2)
    st = ((k, axis + 180.0 + u(-30, 30)), -k / 0.15 * np.array([-0.02, 0.03, 0.08, 0.14, 0.16, 0.14]))
    t_wave = ((0.3 * u(0.6, 1.2), axis + 180.0 + u(-30, 30)),
              np.array([0.1, 0.15, -0.2, -0.3, -0.3, -0.25]) * u(0.7, 1.3))
  elif superclass == "CD":
    v = variant or ("RBBB", "LBBB")[int(rng.integers(2))]
    p["variant"] = v
    if v == "RBBB":  # late rightward-anterior forces: R' in V1, wide S in I and V6
      qrs[1] = _wave(0.0, 0.0095 * w, (1.0, axis), main_prec * np.array([0.7, 0.8, 1, 1, 1, 1]))
      qrs.append(_wave(u(0.07, 0.08), u(0.017, 0.021), (u(0.3, 0.45), 175.0),
                       np.array([u(0.6, 0.9), 0.5, 0.15, -0.2, -0.3, -0.3])))
      qrs_end = 0.115
      t_prec = np.array([-0.25, -0.15, 0.2, 0.35, 0.3, 0.25])
      t_wave = ((0.3, axis), t_prec)
    else:  # LBBB: no septal q, slow notched left-ward depolarisation, discordant ST-T
      s = u(0.018, 0.022)
      gap = u(0.05, 0.06)
      qrs = [
          _wave(0.0, s, (0.75, u(-20.0, 20.0)), np.array([-1.0, -1.3, -0.9, 0.6, 1.1, 1.0])),
          _wave(gap, s, (0.7, u(-20.0, 20.0)), np.array([-0.8, -1.0, -0.5, 0.8, 1.1, 1.0])),
      ]
      qrs_on, qrs_end = 2.2 * s, gap + 2.2 * s
      st = ((0.15, 170.0), np.array([0.2, 0.25, 0.15, -0.05, -0.15, -0.15]))
      t_wave = ((0.35, 175.0), np.array([0.4, 0.5, 0.3, -0.1, -0.25, -0.25]))
  elif superclass == "HYP":
    axis = u(-15.0, 30.0)
    big = np.array([-1.7, -2.2, -0.6, 1.7, 2.4, 2.0]) * u(1.0, 1.25)
    big *= max(1.0, 3.8 / (amp * (-big[0] + big[4])))  # Sokolow-Lyon above 3.5 mV whatever the habitus
    qrs[1] = _wave(0.0, 0.011 * w, (1.7 * u(0.9, 1.2), axis), big)
    qrs[2] = _wave(0.033 * w, 0.01 * w, (0.3, -130.0), term_prec * 1.5)
    qrs_end = 0.055 * w
    st = ((0.12, axis + 180.0), np.array([0.06, 0.05, 0.0, -0.08, -0.15, -0.15]))
    t_wave = ((0.35, axis + 180.0), np.array([0.3, 0.4, 0.15, -0.2, -0.35, -0.3]))
  p_wave = _wave(0.0, 0.022, (0.15 * u(0.7, 1.2), u(30.0, 70.0)), np.array([0.05, 0.08, 0.08, 0.08, 0.08, 0.07]))
  p.update(amp=amp, axis_deg=float(axis), qrs_on_s=qrs_on, qrs_end_s=qrs_end, qrs=qrs, st=st, t_wave=t_wave,
           p_wave=p_wave)
  return p


def _sum_over_beats(t: np.ndarray, centres: np.ndarray, sd: tuple[float, float]) -> np.ndarray:
  """sum_k g(t - centres[k]), g an (asymmetric) Gaussian with rise sd[0] and fall sd[1]."""
  d = t[None, :] - centres[:, None]
  s = np.where(d < 0, sd[0], sd[1])
  return np.exp(-0.5 * (d / s) ** 2).sum(0)


def synthesize_12lead(params: dict, duration_s: float = 10.0, fs: float = 500.0, hr_bpm: float = 70.0, *,
                      rng: np.random.Generator | int | None = None, noise_mv: float = 0.012,
                      baseline_mv: float = 0.04, rr_jitter: float = 0.03) -> tuple[np.ndarray, dict]:
  """A 12-lead ECG (mV, float32 (12, N) in ``LEADS_12`` order) from ``ecg12_params``, and its facts: R-peak
  times, heart rate and the intervals (PR, QRS, QT, QTc in ms, QRS axis) a machine would print in the header.

  Beats follow the heart rate with ``rr_jitter`` (relative) sinus variability; T waves end at QRS onset + QT
  (Bazett QTc, lengthened by a wide QRS); each lead gets its own baseline wander and white noise."""
  rng = np.random.default_rng(rng)
  n = int(round(duration_s * fs))
  t = np.arange(n) / fs
  rr = 60.0 / hr_bpm
  start = -rr * rng.uniform(0.2, 1.0)
  beats = []
  while start < duration_s + rr:  # beats just outside the trace too, so its edges continue the rhythm
    beats.append(start)
    start += rr * (1.0 + rr_jitter * rng.standard_normal())
  r = np.array(beats)
  qrs_on, qrs_end = params["qrs_on_s"], params["qrs_end_s"]
  qrs_ms = (qrs_on + qrs_end) * 1000.0
  qt = params["qtc_s"] * math.sqrt(rr) + max(0.0, (qrs_ms - 95.0) / 1000.0)
  t_end = -qrs_on + qt
  t_fall = 0.03 + 0.015 * math.sqrt(rr)
  t_peak = t_end - 2.4 * t_fall
  x = np.zeros((12, n))
  pw = params["p_wave"]
  p_centre = -qrs_on - params["pr_s"] + 2.0 * pw["sd"][0]
  x += pw["amp"][:, None] * _sum_over_beats(t, r + p_centre, pw["sd"])[None]
  for wv in params["qrs"]:
    x += wv["amp"][:, None] * _sum_over_beats(t, r + wv["t"], wv["sd"])[None]
  (t_mag, t_ang), t_prec = params["t_wave"]
  t_amp = np.concatenate([_limb(t_mag, t_ang), t_prec])
  t_rise = max(0.04, (t_peak - qrs_end) / 2.2)
  x += t_amp[:, None] * _sum_over_beats(t, r + t_peak, (t_rise, t_fall))[None]
  if params["st"] is not None:
    (s_mag, s_ang), s_prec = params["st"]
    s_amp = np.concatenate([_limb(s_mag, s_ang), s_prec])
    d = t[None, :] - r[:, None]
    rise = 0.5 + 0.5 * np.tanh((d - qrs_end + 0.005) / 0.01)  # logistic steps (tanh: no overflow far out)
    fall = 0.5 + 0.5 * np.tanh((t_peak + 0.02 - d) / 0.05)
    plateau = (rise * fall).sum(0)
    x += s_amp[:, None] * plateau[None]
  x *= params["amp"]
  phase = rng.uniform(0, 2 * np.pi, size=(12, 1))
  x += baseline_mv * rng.uniform(0.3, 1.0, size=(12, 1)) * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + phase)
  x += noise_mv * rng.standard_normal((12, n))
  r_in = r[(r >= 0) & (r < duration_s)]
  rr_ms = rr * 1000.0
  info = dict(r_times=r_in, hr_bpm=60.0 / rr, pr_ms=params["pr_s"] * 1000.0, qrs_ms=qrs_ms, qt_ms=qt * 1000.0,
              qtc_ms=qt / math.sqrt(rr) * 1000.0, axis_deg=params["axis_deg"], rr_ms=rr_ms)
  return x.astype(np.float32), info
