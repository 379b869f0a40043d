"""X3D: a lightweight 3D CNN for real-time video classification (Feichtenhofer, "X3D: Expanding Architectures for
Efficient Video Recognition", CVPR 2020), the network of X3D-XS/S/M (they differ only in the input clip).

Written from the paper's description. Input (B, T, H, W, C) clips, channels last; the temporal resolution is never
reduced (all strides are spatial), so a (B, T) frame mask stays valid through the network.

* stem: 1x3x3 conv stride (1, 2, 2) to ``width`` channels (``stem_xy``), then a channel-wise (depthwise) temporal
  conv of ``stem_kernel_t`` frames (``stem_t``) -> BN (``stem_bn``) -> ReLU;
* stages res2..res5 (``stage{i}_block{k}``, i = 1..4, k 0-based) with ``width * 2**(i-1)`` output channels and
  ``blocks`` (default :data:`echoforge.archs.X3D_BLOCKS` = 3, 5, 11, 7) bottlenecks each: 1x1x1 conv to the inner
  width ``round(expansion * out)`` (``conv_a``/``bn_a``, ReLU) -> channel-wise 3x3x3 conv, spatial stride 2 in a
  stage's first block (``conv_b``/``bn_b``) -> squeeze-excitation (``se.fc1``/``se.fc2``, every other block starting
  with the first, ``se_ratio`` of the inner width; 0 disables) -> swish -> 1x1x1 conv to the output width
  (``conv_c``/``bn_c``); a 1x1x1 conv + BN shortcut (``shortcut_conv``/``shortcut_bn``) where the shape changes;
  ReLU after the sum;
* head: 1x1x1 conv to ``expansion`` x the last width (``head_conv``/``head_bn``, ReLU), global average pool,
  Dense to ``head_dim`` (``head_fc``, ReLU; 0 = none), dropout, Dense ``classifier``.

Module names equal the echoforge mirror's attribute paths (``echoforge.models.x3d``), so the conversion is the
generic one. BN epsilon 1e-5, flax momentum 0.9 (torch 0.1); convs have no bias.

With a frame mask (False = padded frame, padding after the valid frames) padded frames are zeroed before every conv
with a temporal extent and left out of every pooling (squeeze-excitation and the final pool), so in eval mode a padded
clip gives exactly the output of its valid frames alone. (In training padded frames still enter BatchNorm batch
statistics, as in ``conv3d``.)

Returns ``(logits float32 (B, num_classes), {"features": (B, head_dim)})``; ``num_classes`` 0 / None returns the
features.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from echoforge.archs import X3D_BLOCKS
from echojax.models import layers
from echojax.errors import UserError
from echojax.models.temporal import _check_mask, _zero_padded
from echojax.models.vit import masked_mean

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def inner_width(out: int, expansion: float) -> int:
  """Channels inside a bottleneck (and of the head conv): ``round(expansion * out)``."""
  return max(1, int(round(expansion * out)))


def se_width(inner: int, ratio: float) -> int:
  """Squeeze channels: ``ratio * inner`` rounded to a multiple of 8 (at least 8)."""
  return max(8, int(inner * ratio + 4) // 8 * 8)


def _pool_thw(x: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
  """(B, T, H, W, C) -> (B, C): spatial mean, then the mean over the valid frames."""
  return masked_mean(jnp.mean(x, axis=(2, 3)), mask)


class _Net(nn.Module):
  """Shared helpers (conv / BN with the family's settings)."""
  dtype: Any = jnp.float32

  def conv(self, features: int, kernel, strides, padding, name: str, groups: int = 1) -> nn.Conv:
    return layers.Conv(features, kernel, strides=strides, padding=padding, feature_group_count=groups, use_bias=False,
                   kernel_init=conv_init, dtype=self.dtype, param_dtype=jnp.float32, name=name)

  def bn(self, name: str, train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                        param_dtype=jnp.float32, name=name)


class SqueezeExcite(nn.Module):
  """Masked global pool -> Dense -> ReLU -> Dense -> sigmoid -> channel scale."""
  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
    s = _pool_thw(x, mask)
    s = nn.relu(nn.Dense(self.squeeze, dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(s))
    s = nn.sigmoid(nn.Dense(x.shape[-1], dtype=self.dtype, param_dtype=jnp.float32, name="fc2")(s))
    return x * s[:, None, None, None, :]


class X3DBlock(_Net):
  """Bottleneck with a channel-wise 3x3x3 conv (see the module docstring)."""
  out: int = 24
  inner: int = 54
  stride: int = 1
  se: int = 0  # squeeze channels; 0 = no squeeze-excitation

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, mask: jnp.ndarray | None) -> jnp.ndarray:
    s = self.stride
    y = nn.relu(self.bn("bn_a", train)(self.conv(self.inner, (1, 1, 1), (1, 1, 1), "VALID", "conv_a")(x)))
    y = _zero_padded(y, mask)
    y = self.conv(self.inner, (3, 3, 3), (1, s, s), ((1, 1),) * 3, "conv_b", groups=self.inner)(y)
    y = self.bn("bn_b", train)(y)
    if self.se:
      y = SqueezeExcite(self.se, dtype=self.dtype, name="se")(y, mask)
    y = nn.swish(y)
    y = self.bn("bn_c", train)(self.conv(self.out, (1, 1, 1), (1, 1, 1), "VALID", "conv_c")(y))
    if s != 1 or x.shape[-1] != self.out:
      x = self.bn("shortcut_bn", train)(self.conv(self.out, (1, 1, 1), (1, s, s), "VALID", "shortcut_conv")(x))
    return nn.relu(y + x)


class X3D(_Net):
  """X3D-XS/S/M network on (B, T, H, W, C) clips; see the module docstring.

  Attributes:
    num_classes: classifier size; 0 / None returns the features.
    width: stem and res2 channels (24 in the paper); stage i has ``width * 2**(i-1)``.
    blocks: bottlenecks per stage (default X3D_BLOCKS = 3, 5, 11, 7).
    expansion: inner width / output width of a bottleneck and of the head conv (2.25).
    se_ratio: squeeze-excitation channels / inner width, in every other block (0.0625; 0 = none).
    stem_kernel_t: frames of the stem's channel-wise temporal conv (5).
    head_dim: width of the Dense layer after the pool (2048; 0 = none).
    dropout: before the classifier (training only).
  """
  num_classes: int | None = 400
  width: int = 24
  blocks: Sequence[int] = X3D_BLOCKS
  expansion: float = 2.25
  se_ratio: float = 0.0625
  stem_kernel_t: int = 5
  head_dim: int = 2048
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, mask: jnp.ndarray | None = None
               ) -> tuple[jnp.ndarray, dict]:
    if x.ndim != 5:
      raise UserError(f"x3d expects videos (B, T, H, W, C); got shape {tuple(x.shape)}")
    if self.stem_kernel_t % 2 != 1:
      raise UserError(f"x3d stem_kernel_t={self.stem_kernel_t} must be odd (config field model.stem_kernel_t)")
    mask = _check_mask(mask, x)
    x = _zero_padded(jnp.asarray(x, self.dtype), mask)
    w, kt = self.width, self.stem_kernel_t
    x = self.conv(w, (1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1)), "stem_xy")(x)
    x = _zero_padded(x, mask)
    x = self.conv(w, (kt, 1, 1), (1, 1, 1), ((kt // 2, kt // 2), (0, 0), (0, 0)), "stem_t", groups=w)(x)
    x = nn.relu(self.bn("stem_bn", train)(x))
    out = w
    for i, n in enumerate(self.blocks, start=1):
      out = w * 2 ** (i - 1)
      inner = inner_width(out, self.expansion)
      for k in range(n):
        se = se_width(inner, self.se_ratio) if self.se_ratio and k % 2 == 0 else 0
        x = X3DBlock(dtype=self.dtype, out=out, inner=inner, stride=2 if k == 0 else 1, se=se,
                     name=f"stage{i}_block{k}")(x, train, mask)
    x = self.conv(inner_width(out, self.expansion), (1, 1, 1), (1, 1, 1), "VALID", "head_conv")(x)
    feats = _pool_thw(nn.relu(self.bn("head_bn", train)(x)), mask)
    if self.head_dim:
      feats = nn.relu(nn.Dense(self.head_dim, dtype=self.dtype, param_dtype=jnp.float32, name="head_fc")(feats))
    feats = feats.astype(jnp.float32)
    aux = {"features": feats}
    if not self.num_classes:
      return feats, aux
    y = nn.Dropout(self.dropout, deterministic=not train)(feats)
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype,
                      param_dtype=jnp.float32, name="classifier")(y)
    return logits.astype(jnp.float32), aux


def x3d(**kwargs) -> X3D:
  """``get_model("x3d", num_classes=..., width=24, blocks=(3, 5, 11, 7), ...)`` (lists from configs -> tuples)."""
  if "blocks" in kwargs:
    kwargs["blocks"] = tuple(int(b) for b in kwargs["blocks"])
  return X3D(**kwargs)
