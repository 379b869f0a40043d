"""Echo view classification from cines: dilated temporal CNN over EfficientNet-B2 frame features, fused with a
spatial (time-pooled) stream by a spatial/temporal weighting gate.

    python -m echojax.train --config view_video_spatiotemporal          # full recipe, dynamic (per-sample) gate
    python -m echojax.train --config view_video_spatiotemporal:mode=learned    # one learned global weight
    python -m echojax.train --config view_video_spatiotemporal:mode=fixed:0.5  # fixed spatial weight w in [0, 1]
    python -m echojax.train --config view_video_spatiotemporal:demo
    python -m echojax.train --config view_video_spatiotemporal:smoke --config.model.kwargs.mode=fixed:0.25
    python -m launch.sweep spatiotemporal_weighting --local --variant demo   # the weighting sweep

Model ``spatiotemporal`` (echojax.models.spatiotemporal) with ``temporal="tcn"``: per-frame EfficientNet-B2 features F;
spatial stream = masked mean of F over frames -> head; temporal stream = TCN (residual dilated 1D convs, width 128,
dilations 1, 2, 4, 8) -> head; output = g_spatial * spatial + g_temporal * temporal. ``model.kwargs.mode`` (same as the
``mode=`` argument): ``dynamic`` (gate from both streams' features, per sample; the gate
weights are written to the predictions CSV by ``echojax.evaluate`` as ``gate_0`` = spatial, ``gate_1`` =
temporal), ``learned`` (one global weight) or ``fixed:w`` (w weights the spatial stream: ``fixed:1`` = spatial
only, ``fixed:0`` = temporal only). Frames: ECG-assisted phase sampling by default (see
experiments/_views_common.py). AdamW 1e-3, cosine, 30 epochs.
"""

from __future__ import annotations

import ml_collections

from echojax.models.spatiotemporal import parse_mode
from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # parse_arg splits on ",", so "fixed:0.5" is one value.
  a = V.parse("view_video_spatiotemporal", arg, mode="dynamic", frames=0, period=2, ecg=True)
  parse_mode(a.mode)  # a UserError naming the field for a bad weighting mode, before anything is built
  v = V.variant(a)
  tcn = {"full": {"width": 128, "dilations": (1, 2, 4, 8)}, "demo": {"width": 64, "dilations": (1, 2, 4)},
         "smoke": {"width": 8, "dilations": (1, 2)}}[v]
  kw = {**V.frame_backbone(a), "temporal": "tcn", "temporal_kwargs": tcn, "combine": "logits",
        "dropout": 0.2 if v == "full" else 0.0}
  kw["mode"] = a.mode  # the weighting mode: config argument mode=, or --config.model.kwargs.mode (the sweep)
  return V.view_config("view_video_spatiotemporal", a, model_name="spatiotemporal", model_kwargs=kw, video=True,
                       frames=V.clip_frames(a), period=a.period, ecg=a.ecg)
