"""EchoSDNet: single- vs dual-screen echo frames (UNITY), ResNet50 transfer learning with conv5 + head trainable.

    python -m echojax.train --config echosdnet --config.init.imagenet=resnet50_notop.h5   # the paper's recipe
    python -m echojax.train --config echosdnet:demo       # learns the synthetic single/dual task in CPU minutes
    python -m echojax.train --config echosdnet:smoke      # seconds; used by the tests
    python -m echojax.evaluate --workdir workdirs/echosdnet --split test
    python -m echojax.predict --workdir workdirs/echosdnet --images FOLDER_OR_FILE [--out predictions.csv]

Recipe (default variant): keras-layout ResNet50 + GAP -> Dense 128 -> Dense 64 -> Dropout 0.5 -> Dense 2
(``echojax.models.echosdnet``), input 224 x 224 x 3 RGB in [0, 1] (the model applies Keras' caffe preprocessing
itself), ImageNet weights from a LOCAL file (``--config.init.imagenet=PATH``: keras ``.h5``, or a torchvision
``.pth``/``.safetensors`` together with ``--config.model.kwargs.layout=torchvision``; nothing is downloaded; left
empty the backbone starts from random weights), only conv5 (``backbone/stage4_*``) and the head train
(``optim.trainable``; the model's ``frozen_stages=3`` also keeps the BatchNorm statistics of conv1-conv4 fixed),
Adam lr 1e-5, categorical cross-entropy over 2 softmax classes (single, dual), batch 32, 20 epochs with early
stopping after 5 validations without a lower validation log-loss (the best checkpoint is the lowest val log-loss),
training augmentation rotation +-15 degrees, shift +-10 % and zoom +-20 % (Keras ImageDataGenerator-style, one
affine warp). The trainer prints the Keras-style parameter summary at the start: total 23,858,370, trainable
15,246,658, non-trainable 8,611,712.

Input scaling: the stored 224 x 224 uint8 frames are divided by 255 (the pipeline's ``data.value_range="unit"``), never
normalised with the dataset's mean/std: EchoSDNet's preprocessing lives inside the model, and
``echojax.predict`` / the exported PyTorch module feed it [0, 1] images the same way.

What the ``demo`` variant changes, and why: there are no ImageNet weights on this machine, and a ResNet50 whose
conv1-conv4 keep their RANDOM initial weights cannot learn much through conv5 alone; and a 224 px ResNet50 is too
slow for "a few CPU minutes". So the demo trains every layer from scratch (``optim.trainable=""``,
``frozen_stages=-1``) with a quarter-width ResNet50 (``width=16``: the same 50 layers, 1/16 of the FLOPs) at 64 px
(``data.size=64``: the stored 224 px frames resized by the loader; one vs two sectors stays obvious), in the
torchvision layout (BatchNorm momentum 0.9 instead of Keras' 0.99, and the model's torch preprocessing: with 0.99
the running statistics of a short from-scratch run are still mostly their initial values; measured: the keras-layout
demo at 112 px stayed at 39-61 % validation accuracy after 150 steps while its train loss fell to 0.1), Adam
lr 1e-3 (1e-5 is a fine-tuning rate) with 10 warmup steps and cosine decay, batch 16, 200 steps (no early stopping)
validating every 40 steps (best checkpoint by val accuracy), and 80 phantom studies (240 frames: 168/36/36) instead
of the generator's 40, so the test split has 36 frames. Loss, head, augmentation and the [0, 1] input are the
recipe's. ``smoke`` shrinks further (width 2, 32 px, 2 steps, 8 studies).

``data.data_dir`` empty = the synthetic UNITY phantom set (single/dual-screen 800 x 600 exports, made once into the
cache); point it at a folder prepared by ``python -m echojax.data.prepare unity --manual-dir UNITY --data-dir DIR``
for real data.
"""

from __future__ import annotations

import ml_collections

from echojax.config import parse_arg
from echojax.data.labels import UNITY_CLASSES
from echojax.errors import UserError
from echojax.models.echosdnet import TRAINABLE_REGEX  # Keras conv5 (flax backbone/stage4_*) + the head


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, smoke=False, demo=False, width=64, size=224, batch_size=32, epochs=20, lr=1e-5)
  if a.smoke and a.demo:
    raise UserError(f"echosdnet: pick one of smoke and demo, not both (config argument {arg!r})")
  c = ml_collections.ConfigDict()
  c.task = ml_collections.ConfigDict({"kind": "classification", "num_classes": len(UNITY_CLASSES),
                                      "class_names": list(UNITY_CLASSES), "label_key": "label"})
  c.data = ml_collections.ConfigDict({
      "name": "unity", "preset": "image", "input_key": "image", "batch_size": a.batch_size, "targets": ["label"],
      "size": None if a.size == 224 else a.size,  # stored frames are 224 x 224 (plain resize at build time)
      "value_range": "unit", "augment": {"rotation": 15.0, "shift": 0.1, "zoom": 0.2}})
  c.model = ml_collections.ConfigDict({"name": "echosdnet",
                                       "kwargs": {"width": a.width, "layout": "keras", "frozen_stages": 3}})
  c.optim = ml_collections.ConfigDict({"name": "adam", "lr": a.lr, "trainable": TRAINABLE_REGEX})
  c.init = ml_collections.ConfigDict({"imagenet": ""})
  c.train = ml_collections.ConfigDict({"num_epochs": float(a.epochs), "log_every": 10, "early_stopping_patience": 5})
  c.eval = ml_collections.ConfigDict({"best_metric": "log_loss", "best_mode": "min"})

  if a.smoke:  # seconds on CPU; used by the tests
    c.data.update(size=32, batch_size=8, synthetic_num=8)
    c.model.kwargs.width = 2
    c.train.update(num_steps=2, log_every=1, checkpoint_every=2, checkpoint_every_epochs=0.0,
                   early_stopping_patience=0)
    c.evals = {"val": {"every_steps": 2, "every_epochs": 0.0}}
  elif a.demo:  # from scratch, all layers, small and fast: see the module docstring for why each change
    c.data.update(size=64, batch_size=16, synthetic_num=80)
    c.model.kwargs.update(width=16, frozen_stages=-1, layout="torchvision")
    c.optim.update(lr=1e-3, schedule="cosine", warmup_steps=10, trainable="")
    c.train.update(num_steps=200, log_every=10, checkpoint_every=40, checkpoint_every_epochs=0.0,
                   early_stopping_patience=0)
    c.eval.update(best_metric="accuracy", best_mode="max")
    c.evals = {"val": {"every_steps": 40, "every_epochs": 0.0}}
  return c
