"""Enhanced ResNet for ECG images in plain PyTorch, mirroring ``echojax.models.ecg_resnet`` (see its docstring for the
design): ResNet ``backbone`` + ``multiscale`` (after stage 1) + ``attention`` and ``calibration`` (on the last stage)
+ ``pyramid`` (FPN, pooled levels) + ``fusion`` (pooled stage-1/2 maps concatenated) + dense head.

Input ``(N, 3, H, W)`` float32 (the JAX model takes ``(B, H, W, 3)``); output the logits ``(N, num_classes)``, or the
pooled features when ``num_classes`` is 0/None. Attribute paths are the flax module paths, so every state-dict key is
the flax path joined by "." (``backbone.stage1_block0.conv1.weight``, ``multiscale.branch15.weight``,
``attention.channel_fc1.weight``, ``calibration.detectors.weight``, ``pyramid.lateral4.bias``, ``head_dense1.weight``,
``head_bn1.running_mean``, ``head_out.weight``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from echoforge.models.resnet import ResNet

COMPONENTS = ("P", "QRS", "T", "ST")
MULTISCALE_KERNELS = (3, 5, 9, 15)
BN_EPS = 1e-5


def _conv(cin: int, cout: int, k: int, bias: bool) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, k, 1, k // 2, bias=bias)


class MultiScaleBlock(nn.Module):
  """1x1 reduce -> parallel k x k convs -> concat -> 1x1 project -> BN, residual + ReLU."""

  def __init__(self, channels: int, width: int, kernels: Sequence[int] = MULTISCALE_KERNELS):
    super().__init__()
    branch = max(1, width // len(kernels))
    self.kernels = tuple(kernels)
    self.reduce = _conv(channels, width, 1, False)
    self.reduce_bn = nn.BatchNorm2d(width, eps=BN_EPS)
    for k in self.kernels:
      setattr(self, f"branch{k}", _conv(width, branch, k, False))
      setattr(self, f"branch{k}_bn", nn.BatchNorm2d(branch, eps=BN_EPS))
    self.project = _conv(branch * len(self.kernels), channels, 1, False)
    self.project_bn = nn.BatchNorm2d(channels, eps=BN_EPS)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(self.reduce_bn(self.reduce(x)))
    ys = [torch.relu(getattr(self, f"branch{k}_bn")(getattr(self, f"branch{k}")(h))) for k in self.kernels]
    return torch.relu(x + self.project_bn(self.project(torch.cat(ys, 1))))


class Attention(nn.Module):
  """CBAM channel (shared MLP over avg/max pools) then 7x7 spatial attention; residual."""

  def __init__(self, channels: int, reduction: int = 16):
    super().__init__()
    hidden = max(1, channels // reduction)
    self.channel_fc1 = nn.Linear(channels, hidden, bias=False)
    self.channel_fc2 = nn.Linear(hidden, channels, bias=False)
    self.spatial = _conv(2, 1, 7, True)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    def mlp(v):
      return self.channel_fc2(torch.relu(self.channel_fc1(v)))

    channel = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    y = x * channel[:, :, None, None]
    s = torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], 1)
    return x + y * torch.sigmoid(self.spatial(s))


class Calibration(nn.Module):
  """K component detectors -> scores -> per-channel gates; returns (x', scores)."""

  def __init__(self, channels: int, components: int = len(COMPONENTS)):
    super().__init__()
    self.detectors = _conv(channels, components, 1, True)
    self.gates = nn.Linear(components, channels)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.sigmoid(self.detectors(x)).mean((2, 3))
    return x * torch.sigmoid(self.gates(scores))[:, :, None, None], scores


def upsample_nearest(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
  """Nearest neighbour to ``size``: row ``i`` reads ``(i * h) // H`` (as the JAX side)."""
  for dim, n in ((2, size[0]), (3, size[1])):
    idx = torch.div(torch.arange(n, device=x.device) * x.shape[dim], n, rounding_mode="floor")
    x = x.index_select(dim, idx)
  return x


class Pyramid(nn.Module):
  """FPN: lateral 1x1, top-down nearest upsampling + add, 3x3 smoothing; pooled levels concatenated."""

  def __init__(self, channels: Sequence[int], dim: int, stages: Sequence[int]):
    super().__init__()
    self.stages = tuple(stages)
    for s, c in zip(self.stages, channels):
      setattr(self, f"lateral{s}", _conv(c, dim, 1, True))
      setattr(self, f"smooth{s}", _conv(dim, dim, 3, True))

  def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
    lat = [getattr(self, f"lateral{s}")(m) for s, m in zip(self.stages, maps)]
    levels = [lat[-1]]
    for lvl in reversed(lat[:-1]):
      levels.insert(0, lvl + upsample_nearest(levels[0], lvl.shape[2:]))
    return torch.cat([getattr(self, f"smooth{s}")(p).mean((2, 3)) for s, p in zip(self.stages, levels)], 1)


class EcgResNet(nn.Module):
  """Mirror of ``echojax.models.ecg_resnet.EcgResNet``; the same constructor arguments (``frozen_stages`` and
  ``dtype`` are JAX-only and dropped by ``echoforge.models.build``)."""

  def __init__(self, depth: int = 50, num_classes: int | None = 5, width: int = 64, layout: str = "torchvision",
               multiscale: bool = True, pyramid: bool = True, attention: bool = True, calibration: bool = True,
               fusion: bool = True, head_units: Sequence[int] = (512, 256), dropout: float = 0.5,
               pyramid_dim: int | None = None, pyramid_stages: Sequence[int] = (2, 3, 4), attention_reduction: int = 16,
               components: int = len(COMPONENTS), in_channels: int = 3):
    super().__init__()
    self.backbone = ResNet(depth=depth, num_classes=None, width=width, layout=layout, in_channels=in_channels)
    chans = self.backbone.stage_channels
    self.pyramid_stages = tuple(int(s) for s in pyramid_stages)
    self.multiscale = MultiScaleBlock(chans[0], width) if multiscale else None
    self.attention = Attention(chans[3], attention_reduction) if attention else None
    self.calibration = Calibration(chans[3], components) if calibration else None
    dim = pyramid_dim or 4 * width
    self.pyramid = Pyramid([chans[s - 1] for s in self.pyramid_stages], dim, self.pyramid_stages) if pyramid else None
    self.fusion = fusion
    d = chans[3] + (dim * len(self.pyramid_stages) if pyramid else 0) + (chans[0] + chans[1] if fusion else 0)
    self.num_features = d
    self.hidden = []
    for j, units in enumerate(head_units, start=1):
      setattr(self, f"head_dense{j}", nn.Linear(d, int(units), bias=False))
      setattr(self, f"head_bn{j}", nn.BatchNorm1d(int(units), eps=BN_EPS))
      setattr(self, f"head_dropout{j}", nn.Dropout(dropout))
      self.hidden.append(j)
      d = int(units)
    self.head_out = nn.Linear(d, num_classes) if num_classes else None

  def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C, H, W) -> (pooled features (N, D), component scores (N, K) or None)."""
    maps = self.backbone.forward_stages(x, {1: self.multiscale} if self.multiscale is not None else None)
    top, scores = maps[3], None
    if self.attention is not None:
      top = self.attention(top)
    if self.calibration is not None:
      top, scores = self.calibration(top)
    maps[3] = top
    parts = [top.mean((2, 3))]
    if self.pyramid is not None:
      parts.append(self.pyramid([maps[s - 1] for s in self.pyramid_stages]))
    if self.fusion:
      parts += [maps[0].mean((2, 3)), maps[1].mean((2, 3))]
    return torch.cat(parts, 1), scores

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h, _ = self.forward_features(x)
    if self.head_out is None:
      return h
    for j in self.hidden:
      h = torch.relu(getattr(self, f"head_bn{j}")(getattr(self, f"head_dense{j}")(h)))
      h = getattr(self, f"head_dropout{j}")(h)
    return self.head_out(h)
