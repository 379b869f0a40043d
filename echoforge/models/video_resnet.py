"""Video ResNets (R3D-18, R(2+1)D-18) in plain PyTorch, mirroring ``echojax.models.video_resnet``.

Inputs are PyTorch video layout ``(N, C, T, H, W)`` float32 (the JAX model takes ``(B, T, H, W, C)``). ``forward``
returns logits ``(N, num_classes)``, or pooled features when ``num_classes`` is 0/None.

The architecture is torchvision's ``torchvision.models.video.r3d_18`` / ``r2plus1d_18``; attribute paths are the flax
module paths (``stem_conv``/``stem_bn`` (r3d) or ``stem_conv_spatial``, ``stem_bn_spatial``, ``stem_conv_temporal``,
``stem_bn`` (r2plus1d); ``stage{i}_block{k}.conv{j}|bn{j}`` (r3d) or ``.conv{j}_spatial|conv{j}_mid_bn|
conv{j}_temporal|bn{j}`` (r2plus1d); ``.downsample_conv|downsample_bn``; ``head``); torchvision's names
(``stem.0``, ``layer1.0.conv1.0.0``, ``fc``, ...) are mapped by :mod:`echoforge.torchvision_names`.
BatchNorm eps is 1e-5 (:data:`BN_EPS`). Width scales every stage ``width * (1, 2, 4, 8)``; the R(2+1)D stem's middle
width is 45 at width 64 (torchvision's constant), scaled as ``stem_mid(width)`` for other widths; both (2+1)D convs
of a block use ``midplanes(in, out)`` of that block (torchvision).
"""

from __future__ import annotations

import torch
from torch import nn

from echoforge.archs import RESNET_BN_EPS, VIDEO_RESNET_BLOCKS

BN_EPS = RESNET_BN_EPS["torchvision"]


def midplanes(cin: int, cout: int) -> int:
  """R(2+1)D middle width: keeps the (2+1)D block's parameter count equal to a full 3x3x3 conv (torchvision)."""
  return (cin * cout * 3 * 3 * 3) // (cin * 3 * 3 + 3 * cout)


def stem_mid(width: int) -> int:
  """R(2+1)D stem middle width: 45 at width 64 (torchvision), ``round(45 * width / 64)`` otherwise (as JAX)."""
  return max(1, round(45 * width / 64))


def _bn(c: int) -> nn.BatchNorm3d:
  return nn.BatchNorm3d(c, eps=BN_EPS)


class VideoBasicBlock(nn.Module):
  """conv1 -> bn1 -> ReLU -> conv2 -> bn2 (+ shortcut), each conv a full 3x3x3 ``conv{j}`` (r3d) or
  ``conv{j}_spatial`` (1x3x3) -> ``conv{j}_mid_bn`` -> ReLU -> ``conv{j}_temporal`` (3x1x1) (r2plus1d);
  ``downsample_conv`` (1x1x1, all-dims stride) + ``downsample_bn`` when the shape changes. As torchvision, both
  (2+1)D convs of a block use the middle width computed from the block's (in, out) channels."""

  def __init__(self, cin: int, planes: int, stride: int, kind: str):
    super().__init__()
    mid = midplanes(cin, planes)
    self.kind = kind
    for j, (c_in, s) in enumerate(((cin, stride), (planes, 1)), start=1):
      if kind == "r3d":
        setattr(self, f"conv{j}", nn.Conv3d(c_in, planes, 3, s, 1, bias=False))
      else:
        setattr(self, f"conv{j}_spatial", nn.Conv3d(c_in, mid, (1, 3, 3), (1, s, s), (0, 1, 1), bias=False))
        setattr(self, f"conv{j}_mid_bn", _bn(mid))
        setattr(self, f"conv{j}_temporal", nn.Conv3d(mid, planes, (3, 1, 1), (s, 1, 1), (1, 0, 0), bias=False))
      setattr(self, f"bn{j}", _bn(planes))
    self.relu = nn.ReLU(inplace=True)
    self.downsample_conv = self.downsample_bn = None
    if stride != 1 or cin != planes:
      self.downsample_conv = nn.Conv3d(cin, planes, 1, stride, 0, bias=False)
      self.downsample_bn = _bn(planes)

  def _conv(self, x: torch.Tensor, j: int) -> torch.Tensor:
    if self.kind == "r3d":
      return getattr(self, f"conv{j}")(x)
    x = self.relu(getattr(self, f"conv{j}_mid_bn")(getattr(self, f"conv{j}_spatial")(x)))
    return getattr(self, f"conv{j}_temporal")(x)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.relu(self.bn1(self._conv(x, 1)))
    y = self.bn2(self._conv(y, 2))
    sc = x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x))
    return self.relu(y + sc)


class VideoResNet(nn.Module):
  """R3D (``kind="r3d"``) or R(2+1)D (``kind="r2plus1d"``); depth 18 ([2, 2, 2, 2] basic blocks) or 34.

  Args:
    kind: "r3d" or "r2plus1d".
    depth: 18 or 34.
    num_classes: size of ``head``; 0/None = no head (pooled features).
    width: stem / first-stage channels (64 = standard).
    in_channels: input channels.
  """

  def __init__(self, kind: str = "r3d", depth: int = 18, num_classes: int | None = 400, width: int = 64,
               in_channels: int = 3):
    super().__init__()
    if depth not in VIDEO_RESNET_BLOCKS:
      raise ValueError(f"unsupported video ResNet depth {depth}; use one of {sorted(VIDEO_RESNET_BLOCKS)}")
    if kind == "r3d":
      self.stem_conv = nn.Conv3d(in_channels, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
    elif kind == "r2plus1d":
      mid = stem_mid(width)
      self.stem_conv_spatial = nn.Conv3d(in_channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
      self.stem_bn_spatial = _bn(mid)
      self.stem_conv_temporal = nn.Conv3d(mid, width, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False)
    else:
      raise ValueError(f"unknown video ResNet kind {kind!r}; use 'r3d' or 'r2plus1d'")
    self.stem_bn = _bn(width)
    self.relu = nn.ReLU(inplace=True)
    self.kind, self.depth = kind, depth
    cin = width
    self.block_names = []
    for i, n in enumerate(VIDEO_RESNET_BLOCKS[depth], start=1):
      planes = width * 2 ** (i - 1)
      for k in range(n):
        name = f"stage{i}_block{k}"
        setattr(self, name, VideoBasicBlock(cin, planes, 2 if (i > 1 and k == 0) else 1, kind))
        self.block_names.append(name)
        cin = planes
    self.num_features = cin
    self.avgpool = nn.AdaptiveAvgPool3d(1)
    self.head = nn.Linear(cin, num_classes) if num_classes else None

  def forward_features(self, x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> pooled features (N, num_features)."""
    if self.kind == "r3d":
      x = self.stem_conv(x)
    else:
      x = self.stem_conv_temporal(self.relu(self.stem_bn_spatial(self.stem_conv_spatial(x))))
    x = self.relu(self.stem_bn(x))
    for name in self.block_names:
      x = getattr(self, name)(x)
    return torch.flatten(self.avgpool(x), 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.forward_features(x)
    return x if self.head is None else self.head(x)
