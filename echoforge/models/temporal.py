"""Temporal video models in plain PyTorch, mirroring ``echojax.models.temporal``.

* ``FrameTemporalModel(kind="cnn_lstm"|"tcn"|"mhsa", backbone=..., backbone_kwargs=..., **encoder options)``:
  per-frame image backbone (``backbone.net``, any echoforge image architecture with ``num_classes=0``) -> temporal
  encoder (``temporal``) -> ``head``.
* ``Conv3DNet``: a small C3D-like network straight on pixels (``conv_{i}``, ``bn_{i}``, ``head``).

Input ``(N, C, T, H, W)`` float32 (or already computed frame features ``(N, T, D)`` for the frame models) and an
optional frame mask ``(N, T)`` bool (False = padded frame, padding at the end as the pipeline does). Module names
mirror the JAX ones; LayerNorm eps 1e-6 (flax default), BatchNorm eps 1e-5; the LSTM is written out gate by gate
(``ii``/``if``/``ig``/``io`` input and ``hi``/``hf``/``hg``/``ho`` hidden Linears) as flax's ``OptimizedLSTMCell``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from echoforge.archs import VIT_LN_EPS as LN_EPS
from echoforge.models.vit import Encoder, masked_mean

GATES = ("i", "f", "g", "o")


def _zero_padded(x: torch.Tensor, mask: torch.Tensor | None, time_dim: int = 1) -> torch.Tensor:
  """Sets padded time steps to exactly zero (``where``: NaN/inf in padding cannot leak)."""
  if mask is None:
    return x
  shape = [mask.shape[0]] + [1] * (x.ndim - 1)
  shape[time_dim] = mask.shape[1]
  return torch.where(mask.view(shape), x, torch.zeros((), dtype=x.dtype))


class LSTMLayer(nn.Module):
  """One LSTM layer; the final hidden state is taken at each sequence's last valid step."""

  def __init__(self, din: int, hidden: int):
    super().__init__()
    self.hidden = hidden
    for g in GATES:
      self.add_module(f"i{g}", nn.Linear(din, hidden, bias=False))
      self.add_module(f"h{g}", nn.Linear(hidden, hidden, bias=True))

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    n, t, _ = x.shape
    h = x.new_zeros(n, self.hidden)
    c = x.new_zeros(n, self.hidden)
    m = getattr(self, "if")
    outs = []
    for s in range(t):
      xs = x[:, s]
      i = torch.sigmoid(self.ii(xs) + self.hi(h))
      f = torch.sigmoid(m(xs) + self.hf(h))
      g = torch.tanh(self.ig(xs) + self.hg(h))
      o = torch.sigmoid(self.io(xs) + self.ho(h))
      c_new = f * c + i * g
      h_new = o * torch.tanh(c_new)
      if mask is not None:  # carry frozen after a sequence's last valid frame
        valid = mask[:, s, None]
        c_new, h_new = torch.where(valid, c_new, c), torch.where(valid, h_new, h)
      c, h = c_new, h_new
      outs.append(h_new)
    return torch.stack(outs, dim=1), h


class LSTMEncoder(nn.Module):
  def __init__(self, din: int, hidden_size: int = 256, num_layers: int = 1):
    super().__init__()
    self.num_layers = num_layers
    for i in range(num_layers):
      self.add_module(f"lstm_{i}", LSTMLayer(din if i == 0 else hidden_size, hidden_size))
    self.num_features = hidden_size

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    x = _zero_padded(x, mask)
    h = None
    for i in range(self.num_layers):
      x, h = getattr(self, f"lstm_{i}")(x, mask)
    return h


class TCNEncoder(nn.Module):
  def __init__(self, din: int, width: int = 128, dilations: Sequence[int] = (1, 2, 4, 8), kernel_size: int = 3,
               ):
    super().__init__()
    self.dilations = tuple(dilations)
    self.proj = nn.Linear(din, width)
    for i, d in enumerate(self.dilations):
      self.add_module(f"ln_{i}", nn.LayerNorm(width, eps=LN_EPS))
      self.add_module(f"conv_{i}", nn.Conv1d(width, width, kernel_size, dilation=d,
                                             padding=d * (kernel_size - 1) // 2))
    self.ln_out = nn.LayerNorm(width, eps=LN_EPS)
    self.num_features = width

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    x = self.proj(_zero_padded(x, mask))
    for i in range(len(self.dilations)):
      y = _zero_padded(getattr(self, f"ln_{i}")(x), mask)
      y = getattr(self, f"conv_{i}")(y.transpose(1, 2)).transpose(1, 2)
      x = x + F.gelu(y)
    return masked_mean(self.ln_out(x), mask)


class AttentionEncoder(nn.Module):
  def __init__(self, din: int, width: int = 128, depth: int = 2, num_heads: int = 4, mlp_dim: int = 256,
               max_len: int = 128, pool: str = "tok"):
    super().__init__()
    self.pool = pool
    self.proj = nn.Linear(din, width)
    self.pos_embedding = nn.Parameter(torch.randn(1, max_len + (pool == "tok"), width) * 0.02)
    self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pool == "tok" else None
    self.encoder = Encoder(width, depth, num_heads, mlp_dim)
    self.num_features = width

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    n = x.shape[0]
    x = self.proj(_zero_padded(x, mask))
    if self.cls is not None:
      x = torch.cat([self.cls.expand(n, -1, -1), x], dim=1)
      if mask is not None:
        mask = torch.cat([torch.ones((n, 1), dtype=torch.bool), mask], dim=1)
    x = x + self.pos_embedding[:, :x.shape[1]]
    x = self.encoder(x, mask)
    return x[:, 0] if self.cls is not None else masked_mean(x, mask)


ENCODERS = {"cnn_lstm": LSTMEncoder, "tcn": TCNEncoder, "mhsa": AttentionEncoder}
TRAINING_ONLY = ("dropout", "attention_dropout", "dtype")


class FrameBackbone(nn.Module):
  """An echoforge image architecture (``num_classes=0``) applied to every frame -> (N, T, D); child ``net``."""

  def __init__(self, name: str, kwargs: Mapping[str, Any]):
    super().__init__()
    from echoforge.models import build  # late: the registry imports this module

    self.net = build(name, num_classes=0, **dict(kwargs))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c, t = x.shape[:3]
    frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, *x.shape[3:])
    return self.net(frames).reshape(n, t, -1)


class FrameTemporalModel(nn.Module):
  """Video -> per-frame backbone -> temporal encoder ``kind`` -> head (arguments as ``get_model(kind, ...)``:
  encoder options such as ``hidden_size``, ``width``, ``depth`` go to the encoder; unknown ones raise)."""

  def __init__(self, kind: str = "mhsa", num_classes: int | None = 2, backbone: str = "efficientnet_b2",
               backbone_kwargs: Mapping[str, Any] | None = None, dropout: float = 0.0, **encoder_kwargs: Any):
    super().__init__()
    if kind not in ENCODERS:
      raise ValueError(f"unknown temporal model {kind!r}; use one of {list(ENCODERS)}")
    self.backbone = FrameBackbone(backbone, backbone_kwargs or {})
    din = self.backbone.net.num_features
    kw = {k: v for k, v in encoder_kwargs.items() if k not in TRAINING_ONLY}
    self.temporal = ENCODERS[kind](din, **kw)
    self.head = nn.Linear(self.temporal.num_features, num_classes) if num_classes else None

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    feats = x if x.ndim == 3 else self.backbone(x)
    mask = None if mask is None else mask.to(torch.bool)
    pooled = self.temporal(feats, mask)
    return pooled if self.head is None else self.head(pooled)


def _same_max_pool(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
  """Max-pool with kernel = stride = ``window`` and flax "SAME" padding (-inf, extra on the high side)."""
  pads = []
  for size, w in zip(reversed(x.shape[2:]), reversed(window)):
    total = max(math.ceil(size / w) * w - size, 0)
    pads += [total // 2, total - total // 2]
  x = F.pad(x, pads, value=float("-inf"))
  return F.max_pool1d(x, window[0]) if x.ndim == 3 else F.max_pool3d(x, tuple(window))


class Conv3DNet(nn.Module):
  """C3D-like: blocks of Conv3d(3x3x3, no bias) -> BN -> ReLU -> max-pool (ts, 2, 2), masked mean -> head."""

  def __init__(self, num_classes: int | None = 2, widths: Sequence[int] = (64, 128, 256, 256),
               temporal_strides: Sequence[int] = (1, 2, 2, 2), dropout: float = 0.0, in_channels: int = 3):
    super().__init__()
    self.strides = tuple(temporal_strides)
    cin = in_channels
    for i, w in enumerate(widths):
      self.add_module(f"conv_{i}", nn.Conv3d(cin, w, 3, 1, 1, bias=False))
      self.add_module(f"bn_{i}", nn.BatchNorm3d(w, eps=1e-5))
      cin = w
    self.num_features = cin
    self.head = nn.Linear(cin, num_classes) if num_classes else None

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    mask = None if mask is None else mask.to(torch.bool)
    for i, ts in enumerate(self.strides):
      x = _zero_padded(x, mask, time_dim=2)
      x = F.relu(getattr(self, f"bn_{i}")(getattr(self, f"conv_{i}")(x)))
      x = _same_max_pool(_zero_padded(x, mask, time_dim=2), (ts, 2, 2))
      if mask is not None and ts > 1:
        mask = _same_max_pool(mask.to(x.dtype)[:, None], (ts,))[:, 0] > 0
    pooled = masked_mean(x.mean(dim=(3, 4)).transpose(1, 2), mask)
    return pooled if self.head is None else self.head(pooled)


class SpatioTemporalFusion(nn.Module):
  """Gated fusion of a spatial (time-pooled) and a temporal stream, mirroring ``echojax.models.spatiotemporal``.

  ``forward`` returns the fused output only (the JAX aux ``gate`` etc. is not returned). Module names:
  ``backbone.net``, ``spatial_head``, ``temporal``, ``temporal_head``, ``gate`` (mode "dynamic") or the scalar
  ``gate_logit`` (mode "learned"); "fixed:w" has no gate parameters.
  """

  def __init__(self, num_classes: int = 2, mode: str = "dynamic", temporal: str = "mhsa",
               temporal_kwargs: Mapping[str, Any] | None = None, backbone: str = "efficientnet_b2",
               backbone_kwargs: Mapping[str, Any] | None = None, combine: str = "logits", dropout: float = 0.0):
    super().__init__()
    if temporal not in ENCODERS:
      raise ValueError(f"unknown temporal model {temporal!r}; use one of {list(ENCODERS)}")
    if combine not in ("logits", "probs"):
      raise ValueError(f"combine must be 'logits' or 'probs', got {combine!r}")
    self.combine = combine
    if mode in ("dynamic", "learned"):
      self.mode, self.fixed_w = mode, None
    elif mode.startswith("fixed:"):
      self.mode, self.fixed_w = "fixed", float(mode.split(":", 1)[1])
    else:
      raise ValueError(f"unknown fusion mode {mode!r}")
    self.backbone = FrameBackbone(backbone, backbone_kwargs or {})
    d = self.backbone.net.num_features
    kw = {k: v for k, v in dict(temporal_kwargs or {}).items() if k not in TRAINING_ONLY}
    self.temporal = ENCODERS[temporal](d, **kw)
    self.spatial_head = nn.Linear(d, num_classes)
    self.temporal_head = nn.Linear(self.temporal.num_features, num_classes)
    if self.mode == "dynamic":
      self.gate = nn.Linear(d + self.temporal.num_features, 2)
    elif self.mode == "learned":
      self.gate_logit = nn.Parameter(torch.zeros(()))

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    feats = x if x.ndim == 3 else self.backbone(x)
    mask = None if mask is None else mask.to(torch.bool)
    s = masked_mean(feats, mask)
    u = self.temporal(feats, mask)
    spatial, temporal = self.spatial_head(s), self.temporal_head(u)
    if self.mode == "dynamic":
      gate = torch.softmax(self.gate(torch.cat([s, u], dim=-1)), dim=-1)
    else:
      w = torch.sigmoid(self.gate_logit) if self.mode == "learned" else torch.tensor(self.fixed_w)
      gate = torch.stack([w, 1.0 - w]).expand(s.shape[0], 2)
    if self.combine == "logits":
      return gate[:, 0:1] * spatial + gate[:, 1:2] * temporal
    probs = gate[:, 0:1] * torch.softmax(spatial, -1) + gate[:, 1:2] * torch.softmax(temporal, -1)
    return torch.log(probs.clamp(min=1e-12))
