"""ECG-assisted cardiac-phase sampling: R peaks, ECG/video alignment, ED/ES frames and phase-aware frame sampling.

Why: echo models that see a whole cardiac cycle (or K frames of systole and K of diastole) learn EF and views
better than models fed arbitrary clips. Most echo exports carry a synchronised ECG trace; when one is present we
use it to find end-diastole (ED, at each R peak) and end-systole (ES, at the end of the T wave); when none is
present we fall back to the periodic intensity cycle of the video, or to uniform sampling.

One module per job (all numpy/scipy; no JAX); this package only re-exports their public names:

* :mod:`echojax.data.ecg.io` -- ECG files (CSV ``time_s,ecg_mv`` or WFDB ``.hea`` + ``.dat``/``.mat``):
  :func:`read_ecg_file` (one lead: the best by signal quality or ``lead=``, at its native rate, short NaN gaps
  interpolated, long ones kept; :class:`EcgReadError` is a UserError naming the file and field),
  :func:`write_ecg_csv`, :func:`align_to_video` (onto the video clock), :func:`find_ecg_file` (beside a cine).
* :mod:`echojax.data.ecg.quality` -- which parts of a lead are ECG: :func:`signal_quality` (flat, saturated, noise,
  lead-off per segment, a usable mask), :func:`lead_scores` / :func:`best_lead` (leads picked by signal, not name).
* :mod:`echojax.data.ecg.detect` -- R peaks: :func:`clean_ecg`, :func:`detect_r_peaks` (polarity-independent,
  edge-safe, T-wave and double-detection rejection, quality-gated), :func:`detect_r_peaks_multilead` (detections
  clustered across leads, scored by every usable lead's QRS energy).
* :mod:`echojax.data.ecg.phases` -- ED/ES frames: :func:`frame_times`, :func:`times_to_frames`,
  :func:`bazett_es_times`, :func:`plausible_cycles` (RR 30-220 bpm, no missed or extra beat, usable ECG),
  :class:`CardiacPhases`, :func:`ecg_phases`, :func:`intensity_phases`.
* :mod:`echojax.data.ecg.sampler` -- the grain frame sampler: :func:`sample_phase_frames`,
  :class:`PhaseFrameSampler` (the built-in ``ecg_phases_<N>`` samplers of :mod:`echojax.data.samplers`, N in
  :data:`PHASE_SAMPLER_FRAMES`; name from :func:`phase_sampler_name`), :func:`record_phases`.

The P-QRS-T generator for phantoms and tests is :func:`echojax.data.synthetic.ecg.synthesize_ecg`.
"""

from echojax.data.ecg.detect import (MIN_FS, REFRACTORY_S, T_WAVE_WINDOW_S, RPeaks, check_fs, clean_ecg,
                                     detect_r_peaks, detect_r_peaks_multilead)
from echojax.data.ecg.io import (ECG_CSV_HEADER, EcgReadError, EcgTrace, align_to_video, find_ecg_file,
                                 read_ecg_file, write_ecg_csv)
from echojax.data.ecg.quality import QUALITY_LABELS, SignalQuality, best_lead, lead_scores, signal_quality
from echojax.data.ecg.phases import (DEFAULT_QTC_S, MIN_PERIOD_CORR, RR_NEIGHBOUR_RATIO, RR_RANGE_S, CardiacPhases,
                                     bazett_es_times, ecg_phases, frame_times, intensity_phases, intensity_signal,
                                     phases_from_r_peak_frames, plausible_cycles, times_to_frames)
from echojax.data.ecg.sampler import (PHASE_SAMPLER_FRAMES, PhaseFrameSampler, phase_sampler_name, record_phases,
                                      sample_phase_frames, uniform_frames)

__all__ = [
    # io
    "ECG_CSV_HEADER", "EcgReadError", "EcgTrace", "align_to_video", "find_ecg_file", "read_ecg_file",
    "write_ecg_csv",
    # detect
    "MIN_FS", "REFRACTORY_S", "T_WAVE_WINDOW_S", "RPeaks", "check_fs", "clean_ecg", "detect_r_peaks",
    "detect_r_peaks_multilead",
    # quality
    "QUALITY_LABELS", "SignalQuality", "best_lead", "lead_scores", "signal_quality",
    # phases
    "DEFAULT_QTC_S", "MIN_PERIOD_CORR", "RR_NEIGHBOUR_RATIO", "RR_RANGE_S", "CardiacPhases", "plausible_cycles",
    "bazett_es_times", "ecg_phases", "frame_times", "intensity_phases", "intensity_signal", "phases_from_r_peak_frames",
    "times_to_frames",
    # sampler
    "PHASE_SAMPLER_FRAMES", "PhaseFrameSampler", "phase_sampler_name", "record_phases",
    "sample_phase_frames", "uniform_frames",
]
