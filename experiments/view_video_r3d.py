"""Echo view classification from cines with R3D-18 (3D ResNet-18, torchvision layout) from scratch.

    python -m echojax.train --config view_video_r3d               # full recipe: 16 frames every 2nd, 112 px
    python -m echojax.train --config view_video_r3d:demo
    python -m echojax.train --config view_video_r3d:smoke

Evenly spaced clips (``frames`` every ``period`` stored frames); ``ecg=true`` for ECG-gated phase sampling.
Width 64 (torchvision's), AdamW 1e-3, cosine, 30 epochs, batch 32; demo width 16 on 32 px clips.
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_video_r3d", arg, frames=0, period=2, ecg=False, width=0)
  width = a.width or {"full": 64, "demo": 16, "smoke": 4}[V.variant(a)]
  return V.view_config("view_video_r3d", a, model_name="r3d_18", model_kwargs={"width": width}, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
