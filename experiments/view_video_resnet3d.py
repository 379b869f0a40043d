"""Echo view classification from cines with a 3D ResNet-18 from scratch (torchvision layout): R3D-18 (full 3D
convolutions) or R(2+1)D-18 (each 3D convolution factorised into a spatial and a temporal one).

    python -m echojax.train --config view_video_resnet3d                    # R3D-18: 16 frames every 2nd, 112 px
    python -m echojax.train --config view_video_resnet3d:model=r2plus1d_18  # R(2+1)D-18
    python -m echojax.train --config view_video_resnet3d:demo
    python -m echojax.train --config view_video_resnet3d:smoke,model=r2plus1d_18

Evenly spaced clips (``frames`` every ``period`` stored frames); ``ecg=true`` for ECG-gated phase sampling.
Width 64 (torchvision's), AdamW 1e-3, cosine, 30 epochs, batch 32; demo width 16 on 32 px clips.
"""

from __future__ import annotations

import ml_collections

from echojax.errors import UserError
from experiments import _views_common as V

MODELS = ("r3d_18", "r2plus1d_18")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_video_resnet3d", arg, model="r3d_18", frames=0, period=2, ecg=False, width=0)
  if a.model not in MODELS:
    raise UserError(f"view_video_resnet3d: model={a.model!r}; use one of {', '.join(MODELS)}")
  width = a.width or {"full": 64, "demo": 16, "smoke": 4}[V.variant(a)]
  return V.view_config("view_video_resnet3d", a, model_name=a.model, model_kwargs={"width": width}, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
