"""Echo view classification from cines with X3D (the XS/S/M network, Feichtenhofer 2020): the lightweight real-time
video model (3.0M parameters with the 11-view head, about 2.6 GFLOPs per 16 x 112 x 112 clip), from scratch.

    python -m echojax.train --config view_video_x3d               # full recipe: 16 frames every 2nd, 112 px
    python -m echojax.train --config view_video_x3d:demo
    python -m echojax.train --config view_video_x3d:smoke

Evenly spaced clips (``frames`` every ``period`` stored frames); ``ecg=true`` for ECG-gated phase sampling.
Width 24 (the paper's), AdamW 1e-3, cosine, 30 epochs, batch 32; demo width 12 with a 256-wide head on 32 px clips;
smoke one block per stage.
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_video_x3d", arg, frames=0, period=2, ecg=False, width=0)
  v = V.variant(a)
  kwargs = {"full": {}, "demo": {"width": 12, "head_dim": 256},
            "smoke": {"width": 4, "blocks": [1, 1, 1, 1], "head_dim": 16}}[v]
  kwargs["width"] = a.width or kwargs.get("width", 24)
  return V.view_config("view_video_x3d", a, model_name="x3d", model_kwargs=kwargs, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
