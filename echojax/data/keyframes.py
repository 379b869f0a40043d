"""Key frames of an echo cine: end-diastole (ED), end-systole (ES) and the mid frame between them (seed 004: LVEF
from a few clinically meaningful frames).

    kf = key_frames(record)        # KeyFrames(ed=.., es=.., mid=.., source="tracings")
    kf.index("mid"), kf.estimated

Rules, in order:

1. **Tracings**: a record's ``ed_frame`` / ``es_frame`` (the echonet_dynamic builder sets them from
   VolumeTracings by traced disc volume, the larger volume being ED: never by the order the frames are listed in,
   which in real EchoNet tracings usually starts with ED but not always). ``source="tracings"``.
2. **Estimated**, for cines without tracings: the first complete plausible cycle of
   :func:`echojax.data.ecg.sampler.record_phases` (stored R peaks, then the stored ECG, then the LV-intensity
   cycle): its ED and the ES that follows it. ``source`` says which ("r_peaks", "ecg", "intensity");
   ``estimated`` is True.
3. Nothing periodic found: the middle frame for all three, ``source="middle"``.

The mid frame is the midpoint of ED and ES, ``(ED + ES) // 2``, as the published system defines it (the mid-video
frame is ``data.image_frame="middle"``). The loader's image preset takes one of them with
``data.image_frame="ed" | "es" | "mid"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

KEY_FRAMES = ("ed", "es", "mid")


@dataclasses.dataclass(frozen=True)
class KeyFrames:
  ed: int
  es: int
  mid: int
  source: str  # "tracings", "r_peaks", "ecg", "intensity" or "middle"

  @property
  def estimated(self) -> bool:
    """True unless ED and ES come from the record's tracings."""
    return self.source != "tracings"

  def index(self, which: str) -> int:
    if which not in KEY_FRAMES:
      raise ValueError(f"key frame {which!r}: use one of {', '.join(KEY_FRAMES)}")
    return int(getattr(self, which))


def key_frames(record: Mapping[str, Any]) -> KeyFrames:
  """ED, ES and mid frame of one record (rules in the module docstring)."""
  n = int(record["num_frames"]) if "num_frames" in record else len(record["video"])
  ed, es = int(record.get("ed_frame", -1)), int(record.get("es_frame", -1))
  if 0 <= ed < n and 0 <= es < n and ed != es:
    return KeyFrames(ed, es, (ed + es) // 2, "tracings")
  from echojax.data.ecg.sampler import record_phases

  phases = record_phases(record)
  cycles = phases.cycles(n)
  if not cycles:
    return KeyFrames(n // 2, n // 2, n // 2, "middle")
  ed, es, _ = cycles[0]
  return KeyFrames(int(ed), int(es), (int(ed) + int(es)) // 2, phases.source)
