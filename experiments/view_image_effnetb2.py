"""Echo view classification from still frames with EfficientNet-B2 (11 views).

    python -m echojax.train --config view_image_effnetb2          # full recipe: EfficientNet-B2 at 224 px
    python -m echojax.train --config view_image_effnetb2:demo     # learns the views in a few CPU minutes
    python -m echojax.train --config view_image_effnetb2:smoke    # seconds; used by the tests
    python -m echojax.evaluate --workdir workdirs/view_image_effnetb2
    python -m echojax.train --config view_image_effnetb2:ecg_phases        # frames sampled by ECG phase from cines
    python -m echojax.train --config view_image_effnetb2:ecg_phases,demo   # (also ecg_phases,smoke)

Data: the ``echo_views`` ``images_224`` builder config (``images`` at 112 px for the demo, resized to 64 px) with
the image preset (batch key ``image``). Model: ``efficientnet_b2`` from scratch (echojax loads no pretrained
weights; its own dropout 0.3 and stochastic depth 0.2), label smoothing 0.1, AdamW lr 1e-3 wd 0.05, 100 warmup
steps then cosine, 30 epochs, batch 32, mild shift/rotation/zoom/intensity augmentation (no flips). The demo and
smoke variants shrink the B2 family with its width/depth multipliers (0.5/0.35 demo, 0.25/0.25 smoke): on this
project's 2-core CPU the real B2's train step (batch 32, 224 px) compiles in about 24 s and then runs about 1.2 s
per batch of 8 (``python benchmarks/train_step.py efficientnet_b2``).

``ecg_phases``: ECG-assisted multi-phase image sampling, as the view study trained its still-image classifier.
The frames come from the ECG-synchronised cines (``videos`` builder config; ``videos_64`` for demo and smoke)
instead of the stills: the pipeline's ``ecg_phase_frame`` sampler takes one frame per cine at a cardiac phase
located from the ECG's R peaks (training: a random cycle and a random one of 8 phases, ED, ES and 3 between each;
evaluation: ED of the first cycle). Cines without ECG fall back to the intensity cycle, then to uniform frames.
The frame is resized to the stills' side (64 px demo, 32 px smoke; the full recipe upsamples the 112 px cines to
224 px) and normalised with the cines' train-split mean/std, so the model and everything else are unchanged.
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_image_effnetb2", arg, ecg_phases=False)
  kw = {"smoke": dict(V.SMOKE_BACKBONE), "demo": dict(V.DEMO_BACKBONE), "full": {}}[V.variant(a)]
  return V.view_config("view_image_effnetb2", a, model_name="efficientnet_b2", model_kwargs=kw, video=False,
                       ecg=a.ecg_phases, demo_steps=200, lr=1e-3 if a.demo else None)
