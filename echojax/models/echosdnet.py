"""EchoSDNet: ResNet50 transfer-learning classifier for single echocardiography frames.

Input: (B, 224, 224, 3) RGB images with values in [0, 1] (other sizes work; 3 channels are required).
Network: input preprocessing -> ResNet50 backbone without head (``backbone``; ``layout="keras"`` by default,
i.e. keras.applications.ResNet50, or ``layout="torchvision"``) -> global average pool -> ``head_dense1``
Dense(128, ReLU) -> ``head_dense2`` Dense(64, ReLU) -> Dropout(0.5) -> ``head_out`` Dense(num_classes=2).
Output: logits (B, 2); softmax belongs to the task / predict step. Aux: ``features`` (B, 2048) pooled
backbone features.

Fine-tuning as in the original Keras model: only the conv5 stage (``backbone/stage4_*``) and the head train.
``frozen_stages=3`` makes the stem and stages 1-3 (Keras conv1-conv4) ALWAYS run BatchNorm on its running
statistics (also with ``train=True``; their ``batch_stats`` never change) and stops gradients at their output.
The optimizer must leave them alone too::

    mask = summary.trainable_mask(variables["params"], trainable_regex(model.frozen_stages))
    tx = summary.freeze(optax.adam(1e-4), mask)
    print(summary.param_summary(variables, mask, name="echosdnet"))

With the Keras layout the summary reads Total 23,858,370 / Trainable 15,246,658 / Non-trainable 8,611,712,
as Keras reports for this model.

Input preprocessing (``preprocess``; the PyTorch exporter must apply the same, the constants are below):

* ``"caffe"`` (default for ``layout="keras"``, = keras.applications.resnet50.preprocess_input): x * 255,
  RGB -> BGR, subtract the BGR mean ``CAFFE_MEAN_BGR`` (no scaling by std).
* ``"torch"`` (default for ``layout="torchvision"``): (x - ``TORCH_MEAN``) / ``TORCH_STD`` per RGB channel.
* ``"none"``: the input goes to the backbone unchanged (when the data pipeline already normalised it).

Training needs a dropout RNG: ``model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from echojax.errors import UserError
from echoforge.archs import RESNET_STAGES
from echojax.models.resnet import ResNet

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
PREPROCESS = ("caffe", "torch", "none")
DEFAULT_PREPROCESS = {"keras": "caffe", "torchvision": "torch"}

# Keras Dense default initialisers.
glorot = nn.initializers.glorot_uniform()


def resolve_preprocess(preprocess: str | None, layout: str) -> str:
  """The preprocessing actually applied: ``None`` picks the layout's own (keras -> caffe, torchvision -> torch)."""
  mode = DEFAULT_PREPROCESS.get(layout, "none") if preprocess is None else preprocess
  if mode not in PREPROCESS:
    raise UserError(f"EchoSDNet preprocess={preprocess!r} is unknown (config field model.preprocess); "
                    f"use one of {', '.join(PREPROCESS)} or leave it unset for the layout's default")
  return mode


def preprocess_input(x: jax.Array, mode: str) -> jax.Array:
  """[0, 1] RGB -> network input for ``mode`` ("caffe", "torch" or "none"); float32 in and out."""
  x = jnp.asarray(x, jnp.float32)
  if mode == "caffe":
    return x[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, jnp.float32)
  if mode == "torch":
    return (x - jnp.asarray(TORCH_MEAN, jnp.float32)) / jnp.asarray(TORCH_STD, jnp.float32)
  if mode == "none":
    return x
  raise UserError(f"preprocess mode {mode!r} is unknown; use one of {', '.join(PREPROCESS)}")


def trainable_regex(frozen_stages: int = 3) -> str:
  """Regex of EchoSDNet's trainable parameters for ``summary.trainable_mask``: the stages after the frozen
  ones plus the head (default: ``^(backbone/stage4_|head_)``, i.e. Keras conv5 + head)."""
  if frozen_stages < 0:
    return ".*"
  if frozen_stages >= 4:
    return "^head_"
  stages = "".join(str(i) for i in range(frozen_stages + 1, 5))
  return rf"^(backbone/stage[{stages}]_|head_)"


# Regex for the default (Keras conv5 + head) fine-tuning.
TRAINABLE_REGEX = trainable_regex(3)


class EchoSDNet(nn.Module):
  """ResNet50 (keras layout by default) + GAP -> 128 -> 64 -> Dropout -> num_classes; see module docstring."""
  num_classes: int | None = 2
  width: int = 64
  dtype: Any = jnp.float32
  layout: str = "keras"
  preprocess: str | None = None
  frozen_stages: int = 3
  depth: int = 50
  hidden: Sequence[int] = (128, 64)
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 4 or x.shape[-1] != 3:
      raise UserError(f"EchoSDNet expects RGB images (B, H, W, 3) in [0, 1] (224 x 224 as trained); "
                      f"got shape {tuple(x.shape)}")
    if self.depth not in RESNET_STAGES:
      raise UserError(f"EchoSDNet depth={self.depth} is not supported (config field model.depth); use 50")
    x = preprocess_input(x, resolve_preprocess(self.preprocess, self.layout))
    feats, _ = ResNet(depth=self.depth, num_classes=0, width=self.width, dtype=self.dtype, layout=self.layout,
                      frozen_stages=self.frozen_stages, name="backbone")(x, train)
    h = feats
    for j, units in enumerate(self.hidden, start=1):
      h = nn.relu(nn.Dense(units, kernel_init=glorot, dtype=self.dtype, param_dtype=jnp.float32,
                           name=f"head_dense{j}")(h))
    h = nn.Dropout(self.dropout_rate, deterministic=not train, name="head_dropout")(h)
    if not self.num_classes:
      return h.astype(jnp.float32), {"features": feats}
    logits = nn.Dense(self.num_classes, kernel_init=glorot, dtype=self.dtype, param_dtype=jnp.float32,
                      name="head_out")(h)
    return logits.astype(jnp.float32), {"features": feats}
