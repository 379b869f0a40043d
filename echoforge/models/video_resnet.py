"""Video ResNets (R3D-18, R(2+1)D-18) in plain PyTorch, mirroring ``echojax.models.video_resnet``.

Inputs are PyTorch video layout ``(N, C, T, H, W)`` float32 (the JAX model takes ``(B, T, H, W, C)``). ``forward``
returns logits ``(N, num_classes)``, or pooled features when ``num_classes`` is 0/None.

The architecture and state-dict keys are torchvision's ``torchvision.models.video.r3d_18`` / ``r2plus1d_18``
(``stem.0/1/3/4``, ``layer1.0.conv1.0.0``, ``layer1.0.downsample.0/1``, ``fc``), so torchvision weights load as is.
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


def conv3d_simple(cin: int, cout: int, stride: int, mid: int) -> nn.Module:
  """Full 3x3x3 conv (R3D)."""
  return nn.Conv3d(cin, cout, 3, stride, 1, bias=False)


def conv2plus1d(cin: int, cout: int, stride: int, mid: int) -> nn.Module:
  """(1x3x3 spatial conv -> BN -> ReLU -> 3x1x1 temporal conv); keys ``0`` (conv), ``1`` (BN), ``3`` (conv)."""
  return nn.Sequential(
    nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False), _bn(mid), nn.ReLU(inplace=True),
    nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class VideoBasicBlock(nn.Module):
  """conv1 = Sequential(conv, BN, ReLU); conv2 = Sequential(conv, BN); ``downsample`` = 1x1x1 conv (all-dims
  stride) + BN when the shape changes. As torchvision, both (2+1)D convs of a block use the middle width computed
  from the block's (in, out) channels."""

  def __init__(self, cin: int, planes: int, stride: int, conv_builder):
    super().__init__()
    mid = midplanes(cin, planes)
    self.conv1 = nn.Sequential(conv_builder(cin, planes, stride, mid), _bn(planes), nn.ReLU(inplace=True))
    self.conv2 = nn.Sequential(conv_builder(planes, planes, 1, mid), _bn(planes))
    self.relu = nn.ReLU(inplace=True)
    self.downsample = None
    if stride != 1 or cin != planes:
      self.downsample = nn.Sequential(nn.Conv3d(cin, planes, 1, stride, 0, bias=False), _bn(planes))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.conv2(self.conv1(x))
    sc = x if self.downsample is None else self.downsample(x)
    return self.relu(y + sc)


class VideoResNet(nn.Module):
  """R3D (``kind="r3d"``) or R(2+1)D (``kind="r2plus1d"``); depth 18 ([2, 2, 2, 2] basic blocks) or 34.

  Args:
    kind: "r3d" or "r2plus1d".
    depth: 18 or 34.
    num_classes: size of ``fc``; 0/None = no head (pooled features).
    width: stem / first-stage channels (64 = standard).
    in_channels: input channels.
  """

  def __init__(self, kind: str = "r3d", depth: int = 18, num_classes: int | None = 400, width: int = 64,
               in_channels: int = 3):
    super().__init__()
    if depth not in VIDEO_RESNET_BLOCKS:
      raise ValueError(f"unsupported video ResNet depth {depth}; use one of {sorted(VIDEO_RESNET_BLOCKS)}")
    if kind == "r3d":
      self.stem = nn.Sequential(nn.Conv3d(in_channels, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                _bn(width), nn.ReLU(inplace=True))
      builder = conv3d_simple
    elif kind == "r2plus1d":
      mid = stem_mid(width)
      self.stem = nn.Sequential(
        nn.Conv3d(in_channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), _bn(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False), _bn(width), nn.ReLU(inplace=True))
      builder = conv2plus1d
    else:
      raise ValueError(f"unknown video ResNet kind {kind!r}; use 'r3d' or 'r2plus1d'")
    self.kind, self.depth = kind, depth
    cin = width
    for i, n in enumerate(VIDEO_RESNET_BLOCKS[depth]):
      planes = width * 2**i
      blocks = []
      for j in range(n):
        blocks.append(VideoBasicBlock(cin, planes, (1 if i == 0 else 2) if j == 0 else 1, builder))
        cin = planes
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.num_features = cin
    self.avgpool = nn.AdaptiveAvgPool3d(1)
    self.fc = nn.Linear(cin, num_classes) if num_classes else None

  def forward_features(self, x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> pooled features (N, num_features)."""
    x = self.stem(x)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(self.avgpool(x), 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.forward_features(x)
    return x if self.fc is None else self.fc(x)
