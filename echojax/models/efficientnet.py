"""EfficientNet B0..B7 ("efficientnet_b0".."efficientnet_b7", and "efficientnet" with ``variant=``).

Architecture matches torchvision's EfficientNet v1 layer for layer, so parameter counts agree (B2 with 1000 classes:
9,109,994) and weights can be exported 1:1:

- stem: 3x3 stride-2 conv (no bias) -> BatchNorm -> SiLU;
- seven stages of MBConv blocks (1x1 expand -> kxk depthwise -> squeeze-excitation with SiLU/sigmoid and
  ``max(1, in_channels // 4)`` squeeze channels -> 1x1 project), residual + stochastic depth ("row" mode, per sample)
  when stride 1 and in == out, drop probability growing linearly 0 -> ``stochastic_depth_prob`` over all blocks;
- 1x1 head conv to 4x the last stage width -> BN -> SiLU, global average pool, dropout, linear classifier.

Channels are ``make_divisible(c * width_mult, 8)``, depths ``ceil(n * depth_mult)``. Convolutions pad
symmetrically by (k-1)//2 like PyTorch (flax "SAME" pads stride-2 convs asymmetrically, which would break parity).
BatchNorm: eps 1e-5 and PyTorch momentum 0.1 (flax momentum 0.9) for B0-B4; eps 1e-3, momentum 0.01 (flax 0.99)
for B5-B7, as torchvision. ``width_mult`` / ``depth_mult`` overrides build tiny versions for tests, e.g.
``EfficientNet(variant="b0", width_mult=0.25, depth_mult=0.25)``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from echoforge.archs import EFFICIENTNET_BASE_STAGES, EFFICIENTNET_VARIANTS
from echojax.models import layers
from echojax.errors import UserError


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Round ``v`` to the nearest multiple of ``divisor`` without going more than 10% below ``v``."""
  min_value = divisor if min_value is None else min_value
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def stage_plan(width_mult: float, depth_mult: float) -> list[tuple[int, int, int, int, int, int]]:
  """Scaled stages: (expand_ratio, kernel, stride, in_ch, out_ch, num_layers) after width/depth multipliers."""
  return [
    (e, k, s, make_divisible(cin * width_mult), make_divisible(cout * width_mult), int(math.ceil(n * depth_mult)))
    for e, k, s, cin, cout, n in EFFICIENTNET_BASE_STAGES
  ]


def _symmetric_uniform(bound: float):
  """U(-bound, bound) initializer (torchvision's classifier init uses bound = 1/sqrt(num_classes))."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ConvBN(nn.Module):
  """Conv (no bias, symmetric (k-1)//2 padding, optional depthwise) -> BatchNorm -> optional SiLU."""

  features: int
  kernel: int = 1
  stride: int = 1
  groups: int = 1
  act: bool = True
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9  # flax convention: running = momentum * running + (1 - momentum) * batch
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    p = (self.kernel - 1) // 2
    x = layers.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                padding=((p, p), (p, p)), feature_group_count=self.groups, use_bias=False, dtype=self.dtype,
                kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"), name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_eps,
                     dtype=self.dtype, name="bn")(x)
    return nn.silu(x) if self.act else x


class SqueezeExcitation(nn.Module):
  """Global average pool -> 1x1 conv (squeeze) -> SiLU -> 1x1 conv (expand) -> sigmoid -> rescale channels."""

  squeeze_channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = layers.Conv(self.squeeze_channels, (1, 1), dtype=self.dtype, name="fc1")(s)
    s = nn.silu(s)
    s = layers.Conv(c, (1, 1), dtype=self.dtype, name="fc2")(s)
    return x * nn.sigmoid(s)


def stochastic_depth(module: nn.Module, x: jnp.ndarray, rate: float, train: bool) -> jnp.ndarray:
  """Per-sample ("row") stochastic depth: drop the whole residual branch with probability ``rate`` in training,
  scaling survivors by 1/(1-rate); identity at eval. Uses the "dropout" rng stream."""
  if not train or rate <= 0.0:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, 0).astype(x.dtype)


class MBConv(nn.Module):
  """Inverted residual block with squeeze-excitation (torchvision MBConv)."""

  expand_ratio: int
  kernel: int
  stride: int
  out_channels: int
  sd_rate: float = 0.0
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    cin = x.shape[-1]
    bn = dict(bn_eps=self.bn_eps, bn_momentum=self.bn_momentum, dtype=self.dtype)
    expanded = make_divisible(cin * self.expand_ratio)
    y = x
    if expanded != cin:
      y = ConvBN(expanded, 1, name="expand", **bn)(y, train)
    y = ConvBN(expanded, self.kernel, self.stride, groups=expanded, name="depthwise", **bn)(y, train)
    y = SqueezeExcitation(max(1, cin // 4), dtype=self.dtype, name="se")(y)
    y = ConvBN(self.out_channels, 1, act=False, name="project", **bn)(y, train)
    if self.stride == 1 and cin == self.out_channels:
      y = stochastic_depth(self, y, self.sd_rate, train) + x
    return y


class EfficientNet(nn.Module):
  """EfficientNet v1: (B, H, W, C) -> (logits (B, num_classes) float32, aux {"features": pooled (B, D)}).

  ``num_classes`` 0/None: the output is the pooled feature vector (D = 4 x last stage width, 1408 for B2), which
  is how the temporal models use it as a per-frame backbone. ``width_mult``, ``depth_mult``, ``dropout``,
  ``bn_eps`` and ``bn_momentum`` (flax convention) override the variant's values when not None.
  """

  num_classes: int | None = 1000
  variant: str = "b0"
  width_mult: float | None = None
  depth_mult: float | None = None
  dropout: float | None = None
  stochastic_depth_prob: float = 0.2
  bn_eps: float | None = None
  bn_momentum: float | None = None
  dtype: Any = jnp.float32

  def hparams(self) -> dict[str, float]:
    """The variant's multipliers/dropout/BN settings with overrides applied (BN momentum in flax convention)."""
    if self.variant not in EFFICIENTNET_VARIANTS:
      raise UserError(f"unknown EfficientNet variant {self.variant!r} (config field model.variant); "
                      f"use one of {', '.join(EFFICIENTNET_VARIANTS)}.")
    wm, dm, drop, eps, torch_mom = EFFICIENTNET_VARIANTS[self.variant]
    return dict(
      width_mult=wm if self.width_mult is None else self.width_mult,
      depth_mult=dm if self.depth_mult is None else self.depth_mult,
      dropout=drop if self.dropout is None else self.dropout,
      bn_eps=eps if self.bn_eps is None else self.bn_eps,
      bn_momentum=1.0 - torch_mom if self.bn_momentum is None else self.bn_momentum,
    )

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, dict]:
    if x.ndim != 4:
      raise UserError(f"EfficientNet expects images (B,H,W,C), got shape {x.shape}; for videos use a temporal "
                      f"model (model.name='cnn_lstm', 'tcn', 'mhsa' or 'spatiotemporal').")
    hp = self.hparams()
    bn = dict(bn_eps=hp["bn_eps"], bn_momentum=hp["bn_momentum"], dtype=self.dtype)
    stages = stage_plan(hp["width_mult"], hp["depth_mult"])
    x = x.astype(self.dtype)
    x = ConvBN(stages[0][3], 3, 2, name="stem", **bn)(x, train)
    total = sum(s[5] for s in stages)
    block_id = 0
    for si, (e, k, s, _, cout, n) in enumerate(stages):
      for j in range(n):
        rate = self.stochastic_depth_prob * block_id / total
        x = MBConv(e, k, s if j == 0 else 1, cout, rate, name=f"stage{si}_block{j}", **bn)(x, train)
        block_id += 1
    x = ConvBN(4 * stages[-1][4], 1, name="head_conv", **bn)(x, train)
    feats = jnp.mean(x, axis=(1, 2))
    aux = {"features": feats.astype(jnp.float32)}
    if not self.num_classes:
      return feats.astype(jnp.float32), aux
    y = nn.Dropout(hp["dropout"], deterministic=not train)(feats)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier",
                      kernel_init=_symmetric_uniform(1.0 / math.sqrt(self.num_classes)))(y)
    return logits.astype(jnp.float32), aux
