"""ECG-image classification with the Enhanced ResNet50 (seed 003): the model and its ablation switches.

    python -m echojax.train --config ecg_image_resnet50 --config.init.imagenet=resnet50-11ad3fa6.pth   # torchvision file
    python -m echojax.train --config ecg_image_resnet50:plain          # the ablation's baseline: a plain ResNet50 + head
    python -m echojax.train --config ecg_image_resnet50 --config.model.kwargs.pyramid=false            # one module off
    python benchmarks/train_step.py --config ecg_image_resnet50        # its train step against the torch mirror

Model: ``ecg_resnet50`` (``echojax.models.ecg_resnet``: torchvision-layout ResNet50 backbone, the multi-scale block
after stage 1, CBAM attention and the P/QRS/T/ST feature calibration on the last stage, an FPN over stages 2-4,
low-level fusion, a 512-256 dense head with batch norm and dropout 0.5). Every module is a ``model.kwargs`` switch
(``multiscale``, ``pyramid``, ``attention``, ``calibration``, ``fusion``; ``head_units``, ``dropout``), so an
ablation is a sweep over them; ``plain`` turns all five off. ImageNet weights come from a LOCAL torchvision ResNet50
file (``init.imagenet``, as EchoSDNet; nothing is downloaded) into ``backbone``; the ECG modules start from their
own initialisation (the multi-scale block as the identity).

Recipe parts from the description: 224 x 224 x 3 input, 5 classes, AdamW (weight decay 1e-4) with a warm-up then
cosine decay from 1e-3, 50 epochs, mild augmentation that keeps the ECG morphology (rotation +-18 degrees, shift and
zoom 10 %, contrast 20 %, brightness 10 %, no flips). Its focal loss and the ECG-image dataset (``data.name``
``ecg_images``) are the data half of the recipe, not part of this file's model. ``smoke`` shrinks the model
(width 8, 32 px) for tests and compile checks.
"""

from __future__ import annotations

import ml_collections

from echojax.config import parse_arg
from echojax.errors import UserError

SWITCHES = ("multiscale", "pyramid", "attention", "calibration", "fusion")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, smoke=False, plain=False, width=64, size=224, batch_size=32, epochs=50, lr=1e-3,
                num_classes=5)
  if a.width < 4:
    raise UserError(f"ecg_image_resnet50: width={a.width} is too small (config argument width); use 4 or more")
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({"kind": "classification", "num_classes": a.num_classes, "label_key": "label"})
  c.data = ml_collections.ConfigDict({
      "name": "ecg_images", "preset": "image", "input_key": "image", "batch_size": a.batch_size, "targets": ["label"],
      "size": None if a.size == 224 else a.size,
      "augment": {"rotation": 18.0, "shift": 0.1, "zoom": 0.1, "contrast": 0.2, "brightness": 0.1}})
  kwargs = {"width": a.width, "layout": "torchvision", **{s: not a.plain for s in SWITCHES},
            "head_units": [512, 256], "dropout": 0.5}
  c.model = ml_collections.ConfigDict({"name": "ecg_resnet50", "kwargs": kwargs})
  c.optim = ml_collections.ConfigDict({"name": "adamw", "lr": a.lr, "weight_decay": 1e-4, "schedule": "cosine",
                                       "warmup_steps": 1000})
  c.init = ml_collections.ConfigDict({"imagenet": ""})
  c.train = ml_collections.ConfigDict({"num_epochs": float(a.epochs), "log_every": 50})
  if a.smoke:  # tests and compile checks: a tiny model on 32 px images
    c.data.update(size=32, batch_size=4)
    c.model.kwargs.update(width=8, head_units=[16, 8])
    c.optim.warmup_steps = 1
    c.train.update(num_steps=2, log_every=1, checkpoint_every=2, checkpoint_every_epochs=0.0)
    c.evals = {"val": {"every_steps": 2, "every_epochs": 0.0}}
  return c
