"""X3D (XS/S/M network) in plain PyTorch, mirroring ``echojax.models.x3d``.

Input ``(N, C, T, H, W)`` float32 and an optional frame mask ``(N, T)`` bool (False = padded frame); ``forward``
returns logits ``(N, num_classes)`` or, with ``num_classes`` 0/None, the features. Attribute paths equal the JAX
module names (``stem_xy``, ``stem_t``, ``stem_bn``, ``stage{i}_block{k}.conv_a|bn_a|conv_b|bn_b|se.fc1|se.fc2|
conv_c|bn_c|shortcut_conv|shortcut_bn``, ``head_conv``, ``head_bn``, ``head_fc``, ``classifier``), so the weights
convert with the generic rule. Padded frames are zeroed before every conv with a temporal extent and left out of
the poolings, as on the JAX side. BatchNorm eps 1e-5.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from echoforge.archs import X3D_BLOCKS
from echoforge.models.vit import masked_mean


def inner_width(out: int, expansion: float) -> int:
  return max(1, int(round(expansion * out)))


def se_width(inner: int, ratio: float) -> int:
  return max(8, int(inner * ratio + 4) // 8 * 8)


def _zero_padded(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
  """(N, C, T, H, W): padded frames set to exactly 0 (``where``: NaN in padding cannot leak)."""
  if mask is None:
    return x
  return torch.where(mask[:, None, :, None, None], x, torch.zeros((), dtype=x.dtype))


def _pool_thw(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
  """(N, C, T, H, W) -> (N, C): spatial mean, then the mean over the valid frames."""
  return masked_mean(x.mean(dim=(3, 4)).transpose(1, 2), mask)


class SqueezeExcite(nn.Module):
  def __init__(self, channels: int, squeeze: int):
    super().__init__()
    self.fc1 = nn.Linear(channels, squeeze)
    self.fc2 = nn.Linear(squeeze, channels)

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    s = torch.sigmoid(self.fc2(F.relu(self.fc1(_pool_thw(x, mask)))))
    return x * s[:, :, None, None, None]


class X3DBlock(nn.Module):
  """1x1x1 -> channel-wise 3x3x3 (spatial stride) -> [SE] -> swish -> 1x1x1, residual, ReLU."""

  def __init__(self, cin: int, out: int, inner: int, stride: int, se: int):
    super().__init__()
    self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
    self.bn_a = nn.BatchNorm3d(inner, eps=1e-5)
    self.conv_b = nn.Conv3d(inner, inner, 3, (1, stride, stride), 1, groups=inner, bias=False)
    self.bn_b = nn.BatchNorm3d(inner, eps=1e-5)
    self.se = SqueezeExcite(inner, se) if se else None
    self.conv_c = nn.Conv3d(inner, out, 1, bias=False)
    self.bn_c = nn.BatchNorm3d(out, eps=1e-5)
    self.shortcut_conv = self.shortcut_bn = None
    if stride != 1 or cin != out:
      self.shortcut_conv = nn.Conv3d(cin, out, 1, (1, stride, stride), bias=False)
      self.shortcut_bn = nn.BatchNorm3d(out, eps=1e-5)

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    y = F.relu(self.bn_a(self.conv_a(x)))
    y = self.bn_b(self.conv_b(_zero_padded(y, mask)))
    if self.se is not None:
      y = self.se(y, mask)
    y = self.bn_c(self.conv_c(F.silu(y)))
    if self.shortcut_conv is not None:
      x = self.shortcut_bn(self.shortcut_conv(x))
    return F.relu(y + x)


class X3D(nn.Module):
  """Arguments as the JAX model (``dropout`` only matters in training)."""

  def __init__(self, num_classes: int | None = 400, width: int = 24, blocks: Sequence[int] = X3D_BLOCKS,
               expansion: float = 2.25, se_ratio: float = 0.0625, stem_kernel_t: int = 5, head_dim: int = 2048,
               dropout: float = 0.5, in_channels: int = 3):
    super().__init__()
    if stem_kernel_t % 2 != 1:
      raise ValueError(f"stem_kernel_t={stem_kernel_t} must be odd")
    w, kt = width, stem_kernel_t
    self.stem_xy = nn.Conv3d(in_channels, w, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
    self.stem_t = nn.Conv3d(w, w, (kt, 1, 1), 1, (kt // 2, 0, 0), groups=w, bias=False)
    self.stem_bn = nn.BatchNorm3d(w, eps=1e-5)
    self.block_names = []
    cin = out = w
    for i, n in enumerate(blocks, start=1):
      out = w * 2 ** (i - 1)
      inner = inner_width(out, expansion)
      for k in range(n):
        se = se_width(inner, se_ratio) if se_ratio and k % 2 == 0 else 0
        name = f"stage{i}_block{k}"
        setattr(self, name, X3DBlock(cin, out, inner, 2 if k == 0 else 1, se))
        self.block_names.append(name)
        cin = out
    head = inner_width(out, expansion)
    self.head_conv = nn.Conv3d(cin, head, 1, bias=False)
    self.head_bn = nn.BatchNorm3d(head, eps=1e-5)
    self.head_fc = nn.Linear(head, head_dim) if head_dim else None
    self.num_features = head_dim or head
    self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else None

  def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, T, H, W) [+ (N, T) mask] -> features (N, num_features)."""
    mask = None if mask is None else mask.to(torch.bool)
    x = self.stem_t(_zero_padded(self.stem_xy(_zero_padded(x, mask)), mask))
    x = F.relu(self.stem_bn(x))
    for name in self.block_names:
      x = getattr(self, name)(x, mask)
    feats = _pool_thw(F.relu(self.head_bn(self.head_conv(x))), mask)
    return feats if self.head_fc is None else F.relu(self.head_fc(feats))

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    feats = self.forward_features(x, mask)
    return feats if self.classifier is None else self.classifier(feats)
