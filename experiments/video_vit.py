"""Echo view classification with a Video Vision Transformer (ViViT): the project's headline command.

    python -m echojax.train --config video_vit                     # full recipe: ViT-S/16x2, 16 frames, 112 px
    python -m echojax.train --config video_vit:attention=joint     # joint space-time attention (ViViT model 1)
    python -m echojax.train --config video_vit:demo                # learns the 11 views in a few CPU minutes
    python -m echojax.train --config video_vit:smoke               # seconds; used by the tests
    python -m echojax.evaluate --workdir workdirs/video_vit        # accuracy, micro/macro-F1, confusion matrix

Model: ``video_vit`` (echojax.models.video_vit.VideoViT), tubelet embedding + ``attention`` = ``factorised``
(default; ViViT model 2: spatial encoder per tubelet step, then a temporal encoder) or ``joint`` (one encoder over
all space-time tokens). Full recipe: variant ``S/16x2`` (ViT-S, 16x16 patches, 2-frame tubelets) on 16-frame clips
taken every 2nd frame of the 112 px cines, dropout 0.1, label smoothing 0.1, AdamW lr 3e-4 wd 0.05, 100 warmup
steps then cosine, 30 epochs, batch 16. Frames are evenly spaced (ViViT needs a contiguous clip); ``ecg=true``
switches on ECG-gated phase sampling instead (see experiments/_views_common.py). Other args: ``variant=``,
``frames=``, ``period=``. Start-up check of the full recipe on CPU: ``--config.train.num_steps=2``.
"""

from __future__ import annotations

import ml_collections

from experiments import _views_common as V


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = V.parse("video_vit", arg, attention="factorised", variant="", frames=0, period=2, ecg=False)
  if a.attention not in ("factorised", "joint"):
    from echojax.errors import UserError
    raise UserError(f"video_vit: attention={a.attention!r}; use factorised or joint")
  v = V.variant(a)
  if v == "full":
    kw = {"variant": a.variant or "S/16x2", "dropout": 0.1}
    frames, lr = a.frames or 16, 3e-4
  elif v == "demo":  # a narrow 2-block transformer on 32 px clips: 4x4 patches of 8 px, 2-frame tubelets
    kw = {"variant": a.variant or "mu/8x2", "width": 64, "depth": 2, "num_heads": 4, "mlp_dim": 128,
          "temporal_depth": 1}
    frames, lr = a.frames or 8, 1e-3
  else:
    kw = {"variant": a.variant or "mu/8x2", "temporal_depth": 1}
    frames, lr = a.frames or 4, 1e-3
  kw["attention"] = a.attention
  return V.view_config("video_vit", a, model_name="video_vit", model_kwargs=kw, video=True, frames=frames,
                       period=a.period, ecg=a.ecg, batch_size=16 if v == "full" else None, lr=lr,
                       demo_steps=400)
