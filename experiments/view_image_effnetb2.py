"""Echo view classification from still frames with EfficientNet-B2 (11 views).

    python -m echojax.train --config view_image_effnetb2          # full recipe: EfficientNet-B2 at 224 px
    python -m echojax.train --config view_image_effnetb2:demo     # learns the views in a few CPU minutes
    python -m echojax.train --config view_image_effnetb2:smoke    # seconds; used by the tests
    python -m echojax.evaluate --workdir workdirs/view_image_effnetb2

Data: the ``echo_views`` ``images_224`` builder config (``images`` at 112 px for the demo, resized to 64 px) with
the image preset (batch key ``image``). Model: ``efficientnet_b2`` from scratch (echojax loads no pretrained
weights; its own dropout 0.3 and stochastic depth 0.2), label smoothing 0.1, AdamW lr 1e-3 wd 0.05, 100 warmup
steps then cosine, 30 epochs, batch 32, mild shift/rotation/zoom/intensity augmentation (no flips). The demo and
smoke variants shrink the B2 family with its width/depth multipliers (0.5/0.35 demo, 0.25/0.25 smoke): on this
project's 2-core CPU the real B2's train step (batch 32, 224 px) compiles in about 24 s and then runs about 1.2 s
per batch of 8 (``python benchmarks/train_step.py efficientnet_b2``).
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("view_image_effnetb2", arg)
  kw = {"smoke": dict(V.SMOKE_BACKBONE), "demo": dict(V.DEMO_BACKBONE), "full": {}}[V.variant(a)]
  return V.view_config("view_image_effnetb2", a, model_name="efficientnet_b2", model_kwargs=kw, video=False,
                       demo_steps=200, lr=1e-3 if a.demo else None)
