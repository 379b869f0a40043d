"""Echo view classification from cines: EfficientNet-B2 per frame -> LSTM -> 11 views.

    python -m echojax.train --config view_video_cnn_lstm          # full recipe (112 px, 16 ECG-gated frames)
    python -m echojax.train --config view_video_cnn_lstm:demo
    python -m echojax.train --config view_video_cnn_lstm:smoke
    python -m echojax.train --config view_video_cnn_lstm:ecg=false,frames=16,period=2   # evenly spaced clip

Model ``cnn_lstm`` (echojax.models.temporal): the per-frame EfficientNet-B2 features go through a 1-layer LSTM
(hidden 256; 64 demo) whose last valid state feeds the head; dropout 0.2. Frames: ECG-assisted phase sampling by
default (see experiments/_views_common.py). Optimisation as the other view configs (AdamW 1e-3, cosine, 30 epochs).
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_video_cnn_lstm", arg, frames=0, period=2, ecg=True, hidden_size=0)
  v = V.variant(a)
  hidden = a.hidden_size or {"full": 256, "demo": 64, "smoke": 8}[v]
  kw = {**V.frame_backbone(a), "hidden_size": hidden, "dropout": 0.2 if v == "full" else 0.0}
  return V.view_config("view_video_cnn_lstm", a, model_name="cnn_lstm", model_kwargs=kw, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
