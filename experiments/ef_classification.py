"""EF classification (reduced EF < 50 vs EF >= 50) from echo videos with a 2D ResNet per frame.

    python -m echojax.train --config ef_classification:model=resnet18,size=112
    python -m echojax.train --config ef_classification:model=resnet152,size=28,weighted
    python -m echojax.train --config ef_classification:smoke
    python -m echojax.train --config ef_classification:demo

``model`` (resnet18 | resnet152 | r3d_18) x ``size`` (28 | 56 | 112: the echonet_dynamic builder config, frames
stored at that size) x ``weighted`` (class-weighted cross-entropy, weights n / (2 n_c) from the train-split class
frequencies) selects each cell of the published table; the default workdir is
``workdirs/ef_classification_model_<m>_size_<s>[_weighted]``.

Video model: ``frame_resnet`` (echojax.models.resnet.FrameResNet) runs the 2D ResNet on every frame (frames
folded into the batch), its linear ``head`` gives per-frame logits (B, T, 2) and the trainer averages them over the
clip's valid frames, which equals temporal average pooling of the features followed by the head. Clips of 32
frames every 2nd frame; optimisation as the EchoNet-Dynamic recipe (SGD 1e-4, momentum 0.9, wd 1e-4, x0.1 every
15 epochs, 45 epochs); validation AUROC picks the best checkpoint.
"""

from __future__ import annotations

import ml_collections

from echojax.config import parse_arg
from echojax.errors import UserError
from experiments.echonet_ef import echonet_data, reference_training, smoke

# model= -> (registry name, fixed kwargs). resnet18/152: the 2D ResNet per frame (frame_resnet). r3d_18: the 3D
# ResNet-18 (3x3x3 convolutions, 33.2M parameters with the 2-class head), the architecture the publication's
# parameter counts point to (README, EF classification table).
MODELS = {"resnet18": ("frame_resnet", {"depth": 18}), "resnet152": ("frame_resnet", {"depth": 152}),
          "r3d_18": ("r3d_18", {})}
SIZES = (28, 56, 112)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, smoke=False, demo=False, model="resnet18", size=0, weighted=False, frames=32, period=2,
                width=64, batch_size=20, epochs=45)
  size_given = bool(a.size)
  a.size = a.size or 112
  if a.model not in MODELS:
    raise UserError(f"ef_classification: model={a.model!r}; use one of {', '.join(MODELS)}")
  if a.size not in SIZES:
    raise UserError(f"ef_classification: size={a.size}; use one of {', '.join(map(str, SIZES))}")
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({"kind": "ef_classification", "target_key": "ef", "threshold": 50.0,
                                      "class_weights": "balanced" if a.weighted else None,
                                      "thresholds": [35.0, 40.0, 45.0, 50.0]})
  c.data = echonet_data(a)
  name, fixed = MODELS[a.model]
  c.model = ml_collections.ConfigDict({"name": name, "kwargs": {**fixed, "width": a.width}})
  reference_training(c, a, best_metric="auroc", best_mode="max")

  if a.smoke:
    smoke(c, {**fixed, "width": 8})
  elif a.demo:
    # 16 frames every 4th hold an end-diastole and an end-systole of the phantom beat. Measured (2-core shared
    # CPU, 1 device, weighted): 2.1 min; best val AUROC 0.92; test (24 videos, all clips) AUROC 0.66.
    # The demo reads the 28 px frames unless size= is given (the EF table's demo rows at 56 and 112 px).
    c.data.update(builder_config=str(a.size) if size_given else "28", frames=16, period=4, batch_size=16,
                  augment={"pad": 2})
    # ResNet152 at width 8: at width 16 a 112 px step costs about 6x ResNet18's (FLOPs), ~17 CPU minutes a run
    c.model.kwargs = {**fixed, "width": 8 if a.model == "resnet152" else 16}
    c.optim.update(name="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=20, grad_clip=1.0)
    c.train.update(num_epochs=40.0, log_every=5)
    c.evals = {"val": {"every_epochs": 4.0}}
  return c
