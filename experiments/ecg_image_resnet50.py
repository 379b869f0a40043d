"""ECG-image classification with the Enhanced ResNet50 (the fourth published system): printouts -> 5 superclasses.

    python -m echojax.train --config ecg_image_resnet50 --config.init.imagenet=resnet50-11ad3fa6.pth   # the recipe
    python -m echojax.train --config ecg_image_resnet50:demo     # phantom printouts, CPU minutes (README)
    python -m echojax.train --config ecg_image_resnet50:smoke    # seconds; used by the tests
    python -m echojax.train --config ecg_image_resnet50 --config.model.kwargs.pyramid=false     # one module off
    python -m echojax.train --config ecg_image_resnet50:plain    # plain ResNet50 + dense head, cross-entropy
    python -m echojax.train --config ecg_image_resnet50:depth=18   # the same model on a ResNet-18 backbone
    python -m launch.sweep ecg_image_ablation --local --variant demo    # the ablation table (each module off)
    python -m echojax.evaluate --workdir workdirs/ecg_image_resnet50 --split test
    python -m echojax.predict --workdir workdirs/ecg_image_resnet50 --images FOLDER_OR_FILE

Data: the ``ecg_images`` builder (``tfds_builders/ecg_images``: class folders or ``labels.csv``, PTB-XL's
superclasses NORM, MI, STTC, CD, HYP, each printout letterboxed on white paper to 224 px, patient-level splits);
with no ``data.data_dir`` the synthetic 12-lead printouts (``python -m echojax.data.synthetic ecg_images``).

Model: ``ecg_resnet50`` (``echojax.models.ecg_resnet``: torchvision-layout ResNet50 backbone, the multi-scale block
after stage 1, CBAM attention and the P/QRS/T/ST feature calibration on the last stage, an FPN over stages 2-4,
low-level fusion, a 512-256 dense head with batch norm and dropout 0.5). Every module is a ``model.kwargs`` switch
(``multiscale``, ``pyramid``, ``attention``, ``calibration``, ``fusion``; ``head_units``, ``dropout``), so an
ablation is a sweep over them; ``plain`` turns all five off and trains with cross-entropy. ImageNet weights come
from a LOCAL torchvision ResNet50 file (``init.imagenet``, as EchoSDNet; nothing is downloaded) into ``backbone``;
the ECG modules start from their own initialisation (the multi-scale block as the identity).

Recipe: 224 x 224 x 3 input normalised by the training split's mean/std, focal loss (gamma 2, per-class alpha from
the train-split frequencies: ``task.focal_alpha="balanced"``, or a list), AdamW (lr 1e-3, weight decay 1e-4) with
a linear warm-up of 1,000 steps then cosine decay, batch 32, 50 epochs, best checkpoint by validation macro-F1, and
augmentation that keeps the ECG's morphology: rotation within 3 degrees, shift 3 %, zoom 5 %, brightness and
contrast 10 %, white paper brought in at the borders, never a flip (a mirrored lead is a different lead).

``demo``: the same modules at a quarter width (``width=16``: every stage has a quarter of the channels), 120
printouts per class, the stored 224 px images resized to 112 px, head dropout 0.1, no augmentation, batch 16, lr
1e-3 with 20 warm-up steps, 800 steps, validation every 100; focal loss as in the recipe. Each of these departures
was measured on the phantoms (2026-12-01, README, Performance): with the recipe's dropout 0.5 the dense head stalls
at chance for the first 150 steps (train accuracy 0.25 at step 100 against 0.43 without); even the brightness and
contrast augmentation alone holds the train accuracy of steps 401-500 at 0.32 (0.63 without; validation 0.30 and
0.37 at step 500): a few hundred steps are too few for the augmented task; at 224 px a step costs 1.7 s against
0.37 s at 112 px, where a logistic regression on the pixels still scores 0.58. So the demo shows that the path
learns, not the recipe's accuracy. ``smoke``: width 8, 32 px, 2 steps.
"""

from __future__ import annotations

import ml_collections

from echojax.config import parse_arg
from echojax.data.labels import ECG_SUPERCLASSES
from echojax.errors import UserError

SWITCHES = ("multiscale", "pyramid", "attention", "calibration", "fusion")
DEPTHS = (18, 34, 50, 101, 152)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, smoke=False, demo=False, plain=False, depth=50, width=64, size=224, batch_size=32, epochs=50,
                lr=1e-3)
  if a.depth not in DEPTHS:
    raise UserError(f"ecg_image_resnet50: depth={a.depth} (config argument depth): the backbone is a ResNet of depth "
                    f"{', '.join(map(str, DEPTHS))}")
  if a.width < 4:
    raise UserError(f"ecg_image_resnet50: width={a.width} is too small (config argument width); use 4 or more")
  if a.smoke and a.demo:
    raise UserError(f"ecg_image_resnet50: pick one of smoke and demo, not both (config argument {arg!r})")
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({
      "kind": "classification", "num_classes": len(ECG_SUPERCLASSES), "class_names": list(ECG_SUPERCLASSES),
      "label_key": "label", "loss": "cross_entropy" if a.plain else "focal", "focal_gamma": 2.0,
      "focal_alpha": "balanced"})
  c.data = ml_collections.ConfigDict({
      "name": "ecg_images", "preset": "image", "input_key": "image", "batch_size": a.batch_size, "targets": ["label"],
      "size": None if a.size == 224 else a.size,  # stored letterboxed at 224 px
      "augment": {"rotation": 3.0, "shift": 0.03, "zoom": 0.05, "contrast": 0.1, "brightness": 0.1, "fill": 255}})
  kwargs = {"width": a.width, "layout": "torchvision", **{s: not a.plain for s in SWITCHES},
            "head_units": [512, 256], "dropout": 0.5}
  if a.depth != 50:  # ecg_resnet50 is the recipe's name for depth 50; other depths are ecg_resnet with a depth
    kwargs["depth"] = a.depth
  c.model = ml_collections.ConfigDict({"name": "ecg_resnet50" if a.depth == 50 else "ecg_resnet", "kwargs": kwargs})
  c.optim = ml_collections.ConfigDict({"name": "adamw", "lr": a.lr, "weight_decay": 1e-4, "schedule": "cosine",
                                       "warmup_steps": 1000})
  c.init = ml_collections.ConfigDict({"imagenet": ""})
  c.train = ml_collections.ConfigDict({"num_epochs": float(a.epochs), "log_every": 50})
  c.eval = ml_collections.ConfigDict({"best_metric": "macro_f1", "best_mode": "max"})
  if a.smoke:  # tests and compile checks: a tiny model on 32 px images
    c.data.update(size=32, batch_size=8, synthetic_num=4)
    c.model.kwargs.update(width=8, head_units=[16, 8])
    c.optim.warmup_steps = 1
    c.train.update(num_steps=2, log_every=1, checkpoint_every=2, checkpoint_every_epochs=0.0)
    c.evals = {"val": {"every_steps": 2, "every_epochs": 0.0}}
  elif a.demo:  # the whole path on the phantoms in CPU minutes (what each change buys: the module docstring)
    c.data.update(batch_size=16, synthetic_num=120, size=a.size if a.size != 224 else 112)
    c.data.augment.update(rotation=0.0, shift=0.0, zoom=0.0, contrast=0.0, brightness=0.0)
    c.model.kwargs.update(width=16, dropout=0.1)
    c.optim.warmup_steps = 20
    c.train.update(num_steps=800, log_every=20, checkpoint_every=100, checkpoint_every_epochs=0.0)
    c.evals = {"val": {"every_steps": 100, "every_epochs": 0.0}}
  return c
