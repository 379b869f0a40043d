"""Echo view classification from cines: EfficientNet-B2 per frame -> multi-head self-attention over time.

    python -m echojax.train --config view_video_mhsa              # full recipe (112 px, 16 ECG-gated frames)
    python -m echojax.train --config view_video_mhsa:demo
    python -m echojax.train --config view_video_mhsa:smoke

Model ``mhsa`` (echojax.models.temporal): per-frame EfficientNet-B2 features -> Dense(width) -> class token +
learned position embedding -> pre-LN transformer encoder (width 128, 2 blocks, 4 heads, MLP 256; padded frames
masked out) -> class token -> head. Frames: ECG-assisted phase sampling by default (see
experiments/_views_common.py), so the position embedding indexes cardiac phase. AdamW 1e-3, cosine, 30 epochs.
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_video_mhsa", arg, frames=0, period=2, ecg=True)
  v = V.variant(a)
  enc = {"full": {"width": 128, "depth": 2, "num_heads": 4, "mlp_dim": 256},
         "demo": {"width": 64, "depth": 1, "num_heads": 4, "mlp_dim": 128},
         "smoke": {"width": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}}[v]
  kw = {**V.frame_backbone(a), **enc, "max_len": 32, "dropout": 0.1 if v == "full" else 0.0}
  return V.view_config("view_video_mhsa", a, model_name="mhsa", model_kwargs=kw, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
