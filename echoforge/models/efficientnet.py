"""EfficientNet B0..B7 in plain PyTorch, mirroring ``echojax.models.efficientnet`` (torchvision's EfficientNet v1).

Input ``(N, C, H, W)`` float32 (PyTorch layout); ``forward`` returns logits ``(N, num_classes)`` or, with
``num_classes`` 0/None, the pooled features. Module names mirror the JAX ones (``stem.conv``, ``stem.bn``,
``stage{s}_block{j}.expand|depthwise|project.conv|bn``, ``...se.fc1|fc2``, ``head_conv.conv|bn``, ``classifier``),
so the name map is mechanical. Convs pad symmetrically by (k-1)//2. BatchNorm eps: 1e-5 for B0-B4, 1e-3 for B5-B7
(``bn_eps`` overrides), as the JAX side.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from echoforge.archs import EFFICIENTNET_BASE_STAGES, EFFICIENTNET_VARIANTS


def make_divisible(v: float, divisor: int = 8) -> int:
  """Nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``v``."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBN(nn.Module):
  """Conv (no bias, symmetric padding, optional groups) -> BatchNorm -> optional SiLU; children ``conv``, ``bn``."""

  def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True,
               eps: float = 1e-5):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    self.bn = nn.BatchNorm2d(cout, eps=eps)
    self.act = nn.SiLU() if act else nn.Identity()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.act(self.bn(self.conv(x)))


class SqueezeExcitation(nn.Module):
  def __init__(self, channels: int, squeeze: int):
    super().__init__()
    self.fc1 = nn.Conv2d(channels, squeeze, 1)
    self.fc2 = nn.Conv2d(squeeze, channels, 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    s = x.mean(dim=(2, 3), keepdim=True)
    return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))


class MBConv(nn.Module):
  """Inverted residual + squeeze-excitation (stochastic depth is identity at inference)."""

  def __init__(self, cin: int, expand_ratio: int, kernel: int, stride: int, cout: int, eps: float):
    super().__init__()
    expanded = make_divisible(cin * expand_ratio)
    self.expand = ConvBN(cin, expanded, 1, eps=eps) if expanded != cin else None
    self.depthwise = ConvBN(expanded, expanded, kernel, stride, groups=expanded, eps=eps)
    self.se = SqueezeExcitation(expanded, max(1, cin // 4))
    self.project = ConvBN(expanded, cout, 1, act=False, eps=eps)
    self.residual = stride == 1 and cin == cout

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = x if self.expand is None else self.expand(x)
    y = self.project(self.se(self.depthwise(y)))
    return y + x if self.residual else y


class EfficientNet(nn.Module):
  """EfficientNet v1; arguments as the JAX model (``stochastic_depth_prob``/``bn_momentum`` only matter in training).

  Args:
    num_classes: classifier size; 0/None = pooled features.
    variant: "b0" .. "b7".
    width_mult, depth_mult, dropout, bn_eps: override the variant's values when not None.
    in_channels: input channels.
  """

  def __init__(self, num_classes: int | None = 1000, variant: str = "b0", width_mult: float | None = None,
               depth_mult: float | None = None, dropout: float | None = None, stochastic_depth_prob: float = 0.2,
               bn_eps: float | None = None, bn_momentum: float | None = None, in_channels: int = 3):
    super().__init__()
    if variant not in EFFICIENTNET_VARIANTS:
      raise ValueError(f"unknown EfficientNet variant {variant!r}; use one of {list(EFFICIENTNET_VARIANTS)}")
    wm, dm, drop, eps, _ = EFFICIENTNET_VARIANTS[variant]
    wm = wm if width_mult is None else width_mult
    dm = dm if depth_mult is None else depth_mult
    drop = drop if dropout is None else dropout
    eps = eps if bn_eps is None else bn_eps
    stages = [(e, k, s, make_divisible(ci * wm), make_divisible(co * wm), int(math.ceil(n * dm)))
              for e, k, s, ci, co, n in EFFICIENTNET_BASE_STAGES]
    self.stem = ConvBN(in_channels, stages[0][3], 3, 2, eps=eps)
    self.block_names = []
    cin = stages[0][3]
    for si, (e, k, s, _, cout, n) in enumerate(stages):
      for j in range(n):
        name = f"stage{si}_block{j}"
        setattr(self, name, MBConv(cin, e, k, s if j == 0 else 1, cout, eps))
        self.block_names.append(name)
        cin = cout
    self.num_features = 4 * stages[-1][4]
    self.head_conv = ConvBN(cin, self.num_features, 1, eps=eps)
    self.dropout = nn.Dropout(drop)
    self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else None

  def forward_features(self, x: torch.Tensor) -> torch.Tensor:
    x = self.stem(x)
    for name in self.block_names:
      x = getattr(self, name)(x)
    return self.head_conv(x).mean(dim=(2, 3))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    f = self.forward_features(x)
    return f if self.classifier is None else self.classifier(self.dropout(f))
