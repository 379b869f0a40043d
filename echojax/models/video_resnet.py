"""Video ResNets R3D-18 and R(2+1)D-18 mirroring ``torchvision.models.video`` (Tran et al., 2018).

Input (B, T, H, W, C) clips, channels last. Parameter counts equal torchvision's with a 400-class head:
r3d_18 33,371,472; r2plus1d_18 31,505,325 (``depth=34`` gives the same families with 3-4-6-3 blocks).

Architecture (as torchvision):

* ``r3d`` stem: conv (3,7,7) stride (1,2,2) pad (1,3,3) -> BN -> ReLU (no max-pool);
  ``r2plus1d`` stem: conv (1,7,7)/(1,2,2) to 45 channels -> BN -> ReLU -> conv (3,1,1) to 64 -> BN -> ReLU.
* four stages of BasicBlocks with 64/128/256/512 planes; stages 2-4 start with stride 2 in T, H and W.
  ``r3d`` convs are full 3x3x3; ``r2plus1d`` factorises each into a spatial (1,3,3) conv to ``midplanes``
  channels -> BN -> ReLU -> temporal (3,1,1) conv, with
  ``midplanes = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)`` computed ONCE per block from the
  block's input/output planes and used for both of its convs (as torchvision does).
* 1x1x1 conv + BN shortcut when the stride or channel count changes; global average pool; Dense head.

``width`` scales every channel count by ``width / 64`` (the R(2+1)D stem's 45 becomes ``round(45 * width/64)``);
width 64 is torchvision. BN epsilon 1e-5, flax momentum 0.9 (== torch 0.1); convs have no bias.

Parameter / module naming (the echoforge mirror uses the flax paths; the torchvision names are those of
echoforge/torchvision_names.py, used for registry entries exported before manifest format 2)::

  flax path                               torchvision name
  stem_conv, stem_bn                      stem.0, stem.1                 (r3d)
  stem_conv_spatial, stem_bn_spatial,     stem.0, stem.1,                (r2plus1d)
  stem_conv_temporal, stem_bn             stem.3, stem.4
  stage{i}_block{k}/conv{j}               layer{i}.{k}.conv{j}.0         (r3d, j = 1, 2)
  stage{i}_block{k}/conv{j}_spatial       layer{i}.{k}.conv{j}.0.0       (r2plus1d)
  stage{i}_block{k}/conv{j}_mid_bn        layer{i}.{k}.conv{j}.0.1       (r2plus1d)
  stage{i}_block{k}/conv{j}_temporal      layer{i}.{k}.conv{j}.0.3       (r2plus1d)
  stage{i}_block{k}/bn{j}                 layer{i}.{k}.conv{j}.1
  stage{i}_block{k}/downsample_conv, _bn  layer{i}.{k}.downsample.0, .1
  head                                    fc

``i`` is 1..4, ``k`` 0-based. Conv kernels are (kT, kH, kW, in, out); torch = transpose ``(4, 3, 0, 1, 2)``.

Returns ``(logits, {"features": pooled})``, or ``(pooled, {"features": pooled})`` with ``num_classes`` 0 / None.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from echoforge.archs import VIDEO_RESNET_BLOCKS, VIDEO_RESNET_KINDS
from echojax.models import layers
from echojax.errors import UserError
from echojax.models.resnet import check_depth, conv_init, layout_options

_TORCH = layout_options("torchvision")
# torchvision's video models initialise the classifier with N(0, 0.01) and zero bias.
head_init = nn.initializers.normal(0.01)


def midplanes(inplanes: int, planes: int) -> int:
  """Channels between the spatial and temporal convs of R(2+1)D: keeps the parameter count of a 3x3x3 conv."""
  return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


def _conv(features: int, kernel, strides, padding, name: str, dtype: Any) -> nn.Conv:
  return layers.Conv(features, kernel, strides=strides, padding=padding, use_bias=False, kernel_init=conv_init,
                 dtype=dtype, param_dtype=jnp.float32, name=name)


def _bn(name: str, train: bool, dtype: Any) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=_TORCH["momentum"], epsilon=_TORCH["epsilon"],
                      dtype=dtype, param_dtype=jnp.float32, name=name)


class VideoBasicBlock(nn.Module):
  """torchvision video ``BasicBlock`` with a full 3D (r3d) or factorised (r2plus1d) conv builder."""
  planes: int
  stride: int = 1
  kind: str = "r3d"
  dtype: Any = jnp.float32

  def _conv3(self, x: jax.Array, j: int, mid: int, stride: int, train: bool) -> jax.Array:
    s = stride
    if self.kind == "r3d":
      return _conv(self.planes, (3, 3, 3), (s, s, s), ((1, 1),) * 3, f"conv{j}", self.dtype)(x)
    x = _conv(mid, (1, 3, 3), (1, s, s), ((0, 0), (1, 1), (1, 1)), f"conv{j}_spatial", self.dtype)(x)
    x = nn.relu(_bn(f"conv{j}_mid_bn", train, self.dtype)(x))
    return _conv(self.planes, (3, 1, 1), (s, 1, 1), ((1, 1), (0, 0), (0, 0)), f"conv{j}_temporal", self.dtype)(x)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    mid = midplanes(x.shape[-1], self.planes)
    y = self._conv3(x, 1, mid, self.stride, train)
    y = nn.relu(_bn("bn1", train, self.dtype)(y))
    y = self._conv3(y, 2, mid, 1, train)
    y = _bn("bn2", train, self.dtype)(y)
    if self.stride != 1 or x.shape[-1] != self.planes:
      s = self.stride
      x = _conv(self.planes, (1, 1, 1), (s, s, s), "VALID", "downsample_conv", self.dtype)(x)
      x = _bn("downsample_bn", train, self.dtype)(x)
    return nn.relu(y + x)


class VideoResNet(nn.Module):
  """R3D / R(2+1)D on (B, T, H, W, C) clips; ``kind`` is "r3d" or "r2plus1d", ``depth`` 18 or 34."""
  kind: str = "r3d"
  depth: int = 18
  num_classes: int | None = 400
  width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.kind not in VIDEO_RESNET_KINDS:
      raise UserError(f"VideoResNet kind={self.kind!r} is unknown (config field model.kind); "
                      f"use one of {VIDEO_RESNET_KINDS}")
    check_depth(self.depth, VIDEO_RESNET_BLOCKS, "VideoResNet")
    if x.ndim != 5:
      raise UserError(f"{self.kind} expects videos (B, T, H, W, C); got shape {tuple(x.shape)}")
    x = jnp.asarray(x, self.dtype)
    w = self.width
    if self.kind == "r3d":
      x = _conv(w, (3, 7, 7), (1, 2, 2), ((1, 1), (3, 3), (3, 3)), "stem_conv", self.dtype)(x)
      x = nn.relu(_bn("stem_bn", train, self.dtype)(x))
    else:
      stem_mid = max(1, round(45 * w / 64))
      x = _conv(stem_mid, (1, 7, 7), (1, 2, 2), ((0, 0), (3, 3), (3, 3)), "stem_conv_spatial", self.dtype)(x)
      x = nn.relu(_bn("stem_bn_spatial", train, self.dtype)(x))
      x = _conv(w, (3, 1, 1), (1, 1, 1), ((1, 1), (0, 0), (0, 0)), "stem_conv_temporal", self.dtype)(x)
      x = nn.relu(_bn("stem_bn", train, self.dtype)(x))
    for i, n in enumerate(VIDEO_RESNET_BLOCKS[self.depth], start=1):
      for k in range(n):
        stride = 2 if (i > 1 and k == 0) else 1
        x = VideoBasicBlock(w * 2 ** (i - 1), stride=stride, kind=self.kind, dtype=self.dtype,
                            name=f"stage{i}_block{k}")(x, train)
    feats = jnp.mean(x, axis=(1, 2, 3)).astype(jnp.float32)
    if not self.num_classes:
      return feats, {"features": feats}
    logits = nn.Dense(self.num_classes, kernel_init=head_init, bias_init=nn.initializers.zeros, dtype=self.dtype,
                      param_dtype=jnp.float32, name="head")(feats)
    return logits.astype(jnp.float32), {"features": feats}
