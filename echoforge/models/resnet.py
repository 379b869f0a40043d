"""2D ResNets in plain PyTorch, mirroring ``echojax.models.resnet`` (torchvision layout and Keras layout).

Inputs are PyTorch layout: ``(N, C, H, W)`` float32 (the JAX model takes ``(B, H, W, C)``). The output is the
logits ``(N, num_classes)``, or the pooled features ``(N, D)`` when ``num_classes`` is 0/None. Unlike the JAX model,
which returns ``(output, aux_dict)``, ``forward`` returns only the output tensor.

Attribute paths are the flax module paths (``stem_conv``, ``stem_bn``, ``stage{i}_block{k}.conv{j}|bn{j}``,
``stage{i}_block{k}.downsample_conv|downsample_bn``, ``head``; ``i`` 1..4, ``k`` 0-based), so the state-dict key of
every tensor is its flax path joined by ".". torchvision's names (``conv1``, ``layer1.0.conv1``, ``fc``, ...) are
mapped by :mod:`echoforge.torchvision_names` (a torchvision state dict loads into ``ResNet(depth=50)`` after
renaming its keys with ``torchvision_names.from_torchvision``).

Layouts (the same constructor argument as the JAX side):

* ``layout="torchvision"``: torchvision's ResNet v1.5 exactly (convolutions without bias, stride on the 3x3 conv of a
  bottleneck, BatchNorm eps 1e-5); the same parameters as torchvision's, under the names above.
* ``layout="keras"``: keras.applications ResNet50 (convolutions WITH bias, stride on the first 1x1 conv of a
  bottleneck, BatchNorm eps 1.001e-5). Same state-dict key names as above; only shapes/biases differ.

BatchNorm epsilons are explicit (:data:`BN_EPS`) and must equal the JAX side's; momentum only matters for training
(torch momentum 0.1 == flax momentum 0.9). Width scales every stage: ``width * (1, 2, 4, 8)`` channels per stage
(times 4 for bottlenecks).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from echoforge.archs import RESNET_BN_EPS as BN_EPS
from echoforge.archs import RESNET_STAGES


def check_layout(layout: str) -> None:
  if layout not in BN_EPS:
    raise ValueError(f"unknown ResNet layout {layout!r}; use one of {sorted(BN_EPS)}")


class BasicBlock(nn.Module):
  """Two 3x3 convs; stride on the first. ``downsample_conv`` (1x1) + ``downsample_bn`` when the shape changes."""

  expansion = 1

  def __init__(self, cin: int, planes: int, stride: int, layout: str):
    super().__init__()
    bias, eps = layout == "keras", BN_EPS[layout]
    self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=bias)
    self.bn1 = nn.BatchNorm2d(planes, eps=eps)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=bias)
    self.bn2 = nn.BatchNorm2d(planes, eps=eps)
    self.relu = nn.ReLU(inplace=True)
    self.downsample_conv = self.downsample_bn = None
    if stride != 1 or cin != planes:
      self.downsample_conv = nn.Conv2d(cin, planes, 1, stride, 0, bias=bias)
      self.downsample_bn = nn.BatchNorm2d(planes, eps=eps)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    sc = x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x))
    return self.relu(y + sc)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (x4). Stride on the 3x3 (torchvision, v1.5) or on the first 1x1 (keras)."""

  expansion = 4

  def __init__(self, cin: int, planes: int, stride: int, layout: str):
    super().__init__()
    bias, eps = layout == "keras", BN_EPS[layout]
    s1, s2 = (stride, 1) if layout == "keras" else (1, stride)
    out = planes * self.expansion
    self.conv1 = nn.Conv2d(cin, planes, 1, s1, 0, bias=bias)
    self.bn1 = nn.BatchNorm2d(planes, eps=eps)
    self.conv2 = nn.Conv2d(planes, planes, 3, s2, 1, bias=bias)
    self.bn2 = nn.BatchNorm2d(planes, eps=eps)
    self.conv3 = nn.Conv2d(planes, out, 1, 1, 0, bias=bias)
    self.bn3 = nn.BatchNorm2d(out, eps=eps)
    self.relu = nn.ReLU(inplace=True)
    self.downsample_conv = self.downsample_bn = None
    if stride != 1 or cin != out:
      self.downsample_conv = nn.Conv2d(cin, out, 1, stride, 0, bias=bias)
      self.downsample_bn = nn.BatchNorm2d(out, eps=eps)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    sc = x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x))
    return self.relu(y + sc)


class ResNet(nn.Module):
  """2D ResNet; ``ResNet(depth=50, num_classes=1000)`` has torchvision's resnet50 parameters (under the flax names).

  Args:
    depth: 18, 34, 50, 101 or 152.
    num_classes: size of the final ``head`` layer; 0/None = no head (returns pooled features).
    width: channels of the stem / first stage (64 = standard).
    layout: "torchvision" or "keras" (see module docstring).
    in_channels: input channels (3 for RGB).

  Like the JAX model, it does no input scaling: feed inputs normalised as the data pipeline did (see the manifest's
  ``input.normalisation``).
  """

  def __init__(self, depth: int = 50, num_classes: int | None = 1000, width: int = 64, layout: str = "torchvision",
               in_channels: int = 3):
    super().__init__()
    if depth not in RESNET_STAGES:
      raise ValueError(f"unsupported ResNet depth {depth}; use one of {sorted(RESNET_STAGES)}")
    check_layout(layout)
    kind, counts = RESNET_STAGES[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    bias, eps = layout == "keras", BN_EPS[layout]
    self.depth, self.layout, self.width = depth, layout, width
    self.stem_conv = nn.Conv2d(in_channels, width, 7, 2, 3, bias=bias)
    self.stem_bn = nn.BatchNorm2d(width, eps=eps)
    self.relu = nn.ReLU(inplace=True)
    # Max-pool pads with -inf, keras zero-pads: identical after a ReLU (inputs >= 0).
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = width
    self.block_names, self.stage_blocks, self.stage_channels = [], [], []
    for i, n in enumerate(counts, start=1):
      planes = width * 2 ** (i - 1)
      self.stage_blocks.append([])
      for k in range(n):
        name = f"stage{i}_block{k}"
        setattr(self, name, block(cin, planes, 2 if (i > 1 and k == 0) else 1, layout))
        self.block_names.append(name)
        self.stage_blocks[-1].append(name)
        cin = planes * block.expansion
      self.stage_channels.append(cin)
    self.num_features = cin
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.head = nn.Linear(cin, num_classes) if num_classes else None

  def forward_stages(self, x: torch.Tensor, hooks: Mapping[int, Callable] | None = None) -> list[torch.Tensor]:
    """(N, C, H, W) -> the output map of each stage 1..4; ``hooks[i](x)`` runs on stage i's output before the next
    stage (the JAX ResNet's ``stage_hooks``)."""
    hooks = hooks or {}
    x = self.maxpool(self.relu(self.stem_bn(self.stem_conv(x))))
    stages = []
    for i, names in enumerate(self.stage_blocks, start=1):
      for name in names:
        x = getattr(self, name)(x)
      if i in hooks:
        x = hooks[i](x)
      stages.append(x)
    return stages

  def forward_features(self, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> pooled features (N, num_features)."""
    return torch.flatten(self.avgpool(self.forward_stages(x)[-1]), 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.forward_features(x)
    return x if self.head is None else self.head(x)


class FrameResNet(nn.Module):
  """A 2D ResNet applied to every frame of a ``(N, C, T, H, W)`` video -> ``(N, T, D)`` per-frame features.

  Mirrors ``echojax.models.resnet.FrameResNet``: submodule ``backbone`` (a headless :class:`ResNet`); with
  ``num_classes`` > 0 fully-connected layers ``fc0, fc1, ...`` (``head_units``, Linear-ReLU) and a per-frame
  ``head`` give ``(N, T, num_classes)`` (``pool="mean_std"``: the features' mean and std over time first, so
``(N, num_classes)``). ``dropout`` / ``cnn_dropout`` act in training only (identity here).
  """

  def __init__(self, depth: int = 18, num_classes: int | None = 0, width: int = 64, layout: str = "torchvision",
               in_channels: int = 3, head_units=(), dropout: float = 0.0, cnn_dropout: float = 0.0,
               pool: str = "frames"):
    super().__init__()
    self.backbone = ResNet(depth=depth, num_classes=None, width=width, layout=layout, in_channels=in_channels)
    self.fc_names, self.pool = [], pool
    dim = self.backbone.num_features * (2 if pool == "mean_std" else 1)
    for i, units in enumerate(head_units if num_classes else ()):
      setattr(self, f"fc{i}", nn.Linear(dim, int(units)))
      self.fc_names.append(f"fc{i}")
      dim = int(units)
    self.head = nn.Linear(dim, num_classes) if num_classes else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c, t = x.shape[:3]
    frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, *x.shape[3:])
    feats = self.backbone.forward_features(frames).reshape(n, t, -1)
    if self.head is None:
      return feats
    if self.pool == "mean_std":  # every frame of an exported clip is valid
      mean = feats.mean(dim=1)
      feats = torch.cat([mean, torch.sqrt((feats - mean[:, None]).square().mean(dim=1) + 1e-6)], dim=-1)
    for name in self.fc_names:
      feats = torch.relu(getattr(self, name)(feats))
    return self.head(feats)
