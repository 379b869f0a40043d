"""Echo view classification from cines with a small C3D-style 3D CNN straight on pixels.

    python -m echojax.train --config view_video_3dcnn             # full recipe: widths 64-128-256-256, 112 px
    python -m echojax.train --config view_video_3dcnn:demo
    python -m echojax.train --config view_video_3dcnn:smoke

Model ``conv3d`` (echojax.models.temporal.Conv3DNet): blocks of Conv3D 3x3x3 -> BN -> ReLU -> max-pool (spatial 2x2
every block, temporal 2 after the first), global average -> head. Evenly spaced clips; ``ecg=true`` for ECG-gated
phase sampling. AdamW 1e-3, cosine, 30 epochs, batch 32.
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_video_3dcnn", arg, frames=0, period=2, ecg=False)
  v = V.variant(a)
  widths, strides = {"full": ((64, 128, 256, 256), (1, 2, 2, 2)), "demo": ((16, 32, 64), (1, 2, 2)),
                     "smoke": ((4, 8), (1, 2))}[v]
  kw = {"widths": widths, "temporal_strides": strides, "dropout": 0.2 if v == "full" else 0.0}
  return V.view_config("view_video_3dcnn", a, model_name="conv3d", model_kwargs=kw, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
