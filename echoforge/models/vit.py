"""Image Vision Transformer in plain PyTorch, mirroring ``echojax.models.vit`` (torchvision ``vit_b_16`` layout).

Input ``(N, C, H, W)`` float32; ``forward`` returns logits ``(N, num_classes)`` or, with ``num_classes`` 0/None,
the pooled features. Module names mirror the JAX ones: ``conv_proj``, ``embed.cls``, ``embed.pos_embedding``,
``encoder.layer_{i}.ln_1|attention.{query,key,value,out}|ln_2|mlp.fc1|mlp.fc2``, ``encoder.encoder_norm``, ``head``.
Attention is written out (not ``nn.MultiheadAttention``) so each projection is its own Linear, as flax's
``MultiHeadDotProductAttention`` (scores scaled by 1/sqrt(head_dim)). LayerNorm eps 1e-6; exact GELU.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from echoforge.archs import VIT_LN_EPS as LN_EPS
from echoforge.archs import VIT_SIZES



def decode_variant(variant: str) -> dict[str, int]:
  """``"S/16"`` -> width, depth, mlp_dim, num_heads, patch_size (a bare size leaves patch_size out)."""
  size, _, patch = variant.partition("/")
  if size not in VIT_SIZES:
    raise ValueError(f"unknown transformer size {size!r}; use one of {list(VIT_SIZES)}")
  out = dict(zip(("width", "depth", "mlp_dim", "num_heads"), VIT_SIZES[size]))
  if patch:
    out["patch_size"] = int(patch)
  return out


class SelfAttention(nn.Module):
  """Multi-head self-attention with separate query/key/value/out Linears (flax MultiHeadDotProductAttention)."""

  def __init__(self, width: int, num_heads: int):
    super().__init__()
    self.num_heads = num_heads
    self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
    self.out = nn.Linear(width, width)

  def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    b, n, d = x.shape
    h = self.num_heads

    def heads(t):
      return t.view(b, n, h, d // h).transpose(1, 2)  # (B, H, N, Dh)

    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    scores = (q / math.sqrt(d // h)) @ k.transpose(-1, -2)
    if key_mask is not None:  # (B, N) bool, False = padded key
      scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    y = torch.softmax(scores, dim=-1) @ v
    return self.out(y.transpose(1, 2).reshape(b, n, d))


class MlpBlock(nn.Module):
  def __init__(self, width: int, mlp_dim: int):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(width, mlp_dim), nn.Linear(mlp_dim, width)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(nn.functional.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
  """Pre-LN: x + Attn(LN(x)); x + MLP(LN(x))."""

  def __init__(self, width: int, num_heads: int, mlp_dim: int):
    super().__init__()
    self.ln_1 = nn.LayerNorm(width, eps=LN_EPS)
    self.attention = SelfAttention(width, num_heads)
    self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)
    self.mlp = MlpBlock(width, mlp_dim)

  def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    x = x + self.attention(self.ln_1(x), key_mask)
    return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
  def __init__(self, width: int, depth: int, num_heads: int, mlp_dim: int):
    super().__init__()
    self.depth = depth
    for i in range(depth):
      setattr(self, f"layer_{i}", EncoderBlock(width, num_heads, mlp_dim))
    self.encoder_norm = nn.LayerNorm(width, eps=LN_EPS)

  def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    for i in range(self.depth):
      x = getattr(self, f"layer_{i}")(x, key_mask)
    return self.encoder_norm(x)


class TokenPrep(nn.Module):
  """Optional class token + learned position embedding over ``num_tokens`` (incl. the class token)."""

  def __init__(self, width: int, num_tokens: int, use_cls: bool = True):
    super().__init__()
    self.cls = nn.Parameter(torch.zeros(1, 1, width)) if use_cls else None
    self.pos_embedding = nn.Parameter(torch.randn(1, num_tokens, width) * 0.02)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.cls is not None:
      x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
    return x + self.pos_embedding


class ViT(nn.Module):
  """Image ViT; arguments as the JAX model plus ``image_size`` (the position embedding's grid, fixed at export).

  Args:
    num_classes: head size; 0/None = pooled features.
    variant: "<size>/<patch>", e.g. "S/16"; width/depth/mlp_dim/num_heads/patch_size override it.
    pool: "tok" (class token) or "gap" (mean of tokens).
    image_size: (H, W) or int the model was built for (224 default).
  """

  def __init__(self, num_classes: int | None = 1000, variant: str = "B/16", width: int | None = None,
               depth: int | None = None, mlp_dim: int | None = None, num_heads: int | None = None,
               patch_size: int | None = None, dropout: float = 0.0, attention_dropout: float = 0.0,
               pool: str = "tok", image_size: int | tuple[int, int] = 224, in_channels: int = 3):
    super().__init__()
    hp = decode_variant(variant)
    hp.setdefault("patch_size", 16)
    for k, v in (("width", width), ("depth", depth), ("mlp_dim", mlp_dim), ("num_heads", num_heads),
                 ("patch_size", patch_size)):
      if v is not None:
        hp[k] = v
    if pool not in ("tok", "gap"):
      raise ValueError(f"pool must be 'tok' or 'gap', got {pool!r}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    p = hp["patch_size"]
    self.pool = pool
    self.conv_proj = nn.Conv2d(in_channels, hp["width"], p, p)
    self.embed = TokenPrep(hp["width"], (h // p) * (w // p) + (pool == "tok"), use_cls=pool == "tok")
    self.encoder = Encoder(hp["width"], hp["depth"], hp["num_heads"], hp["mlp_dim"])
    self.num_features = hp["width"]
    self.head = nn.Linear(hp["width"], num_classes) if num_classes else None

  def forward_features(self, x: torch.Tensor) -> torch.Tensor:
    x = self.conv_proj(x)  # (N, D, H/p, W/p)
    x = x.flatten(2).transpose(1, 2)  # (N, H/p * W/p, D), row-major like the JAX reshape
    x = self.encoder(self.embed(x))
    return x[:, 0] if self.pool == "tok" else x.mean(dim=1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    f = self.forward_features(x)
    return f if self.head is None else self.head(f)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
  """Mean over dim 1 counting only positions where ``mask`` (N, L) is True (all when None)."""
  if mask is None:
    return x.mean(dim=1)
  m = mask[:, :, None].to(torch.bool)
  total = torch.where(m, x, torch.zeros((), dtype=x.dtype)).sum(dim=1)
  return total / m.sum(dim=1).clamp(min=1).to(x.dtype)


class VideoViT(nn.Module):
  """ViViT with a tubelet embedding, mirroring ``echojax.models.video_vit`` (joint or factorised attention).

  Input ``(N, C, T, H, W)`` float32 and an optional frame mask ``(N, T)`` bool (False = padded frame; a tubelet is
  padded when all its frames are, and padded tubelets are never attended to). Torch-only arguments
  ``num_frames`` / ``image_size`` fix the position-embedding grids (the JAX model sizes them at init).
  Module names: ``tubelet_embedding``; joint: ``embed``, ``encoder``; factorised: ``spatial_embed``,
  ``spatial_encoder``, ``temporal_embed``, ``temporal_encoder``; ``head``.
  """

  def __init__(self, num_classes: int | None = 2, variant: str = "S/16x2", attention: str = "factorised",
               width: int | None = None, depth: int | None = None, mlp_dim: int | None = None,
               num_heads: int | None = None, patch_size: int | None = None, tubelet_size: int | None = None,
               temporal_depth: int | None = None, dropout: float = 0.0, attention_dropout: float = 0.0,
               pool: str = "tok", num_frames: int = 16, image_size: int | tuple[int, int] = 112,
               in_channels: int = 3):
    super().__init__()
    size, _, rest = variant.partition("/")
    hp = decode_variant(size)
    patch, _, tube = rest.partition("x")
    hp["patch_size"] = int(patch) if patch else 16
    hp["tubelet_size"] = int(tube) if tube else 2
    for k, v in (("width", width), ("depth", depth), ("mlp_dim", mlp_dim), ("num_heads", num_heads),
                 ("patch_size", patch_size), ("tubelet_size", tubelet_size)):
      if v is not None:
        hp[k] = v
    tdepth = temporal_depth if temporal_depth is not None else min(4, hp["depth"])
    if attention not in ("joint", "factorised"):
      raise ValueError(f"attention must be 'joint' or 'factorised', got {attention!r}")
    if pool not in ("tok", "gap"):
      raise ValueError(f"pool must be 'tok' or 'gap', got {pool!r}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    p, tt, d = hp["patch_size"], hp["tubelet_size"], hp["width"]
    self.attention, self.pool, self.tubelet = attention, pool, tt
    cls = pool == "tok"
    nt, nh, nw = num_frames // tt, h // p, w // p
    self.tubelet_embedding = nn.Conv3d(in_channels, d, (tt, p, p), (tt, p, p))
    if attention == "joint":
      self.embed = TokenPrep(d, nt * nh * nw + cls, use_cls=cls)
      self.encoder = Encoder(d, hp["depth"], hp["num_heads"], hp["mlp_dim"])
    else:
      self.spatial_embed = TokenPrep(d, nh * nw + cls, use_cls=cls)
      self.spatial_encoder = Encoder(d, hp["depth"], hp["num_heads"], hp["mlp_dim"])
      self.temporal_embed = TokenPrep(d, nt + cls, use_cls=cls)
      self.temporal_encoder = Encoder(d, tdepth, hp["num_heads"], hp["mlp_dim"])
    self.num_features = d
    self.head = nn.Linear(d, num_classes) if num_classes else None

  def _pool(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x[:, 0] if self.pool == "tok" else masked_mean(x, mask)

  def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    n, _, t = x.shape[:3]
    tube_mask = None
    if mask is not None:
      mask = mask.to(torch.bool)
      tube_mask = mask.view(n, t // self.tubelet, self.tubelet).any(dim=-1)
      x = torch.where(mask[:, None, :, None, None], x, torch.zeros((), dtype=x.dtype))
    x = self.tubelet_embedding(x).permute(0, 2, 3, 4, 1)  # (N, nt, nh, nw, D), as the JAX layout
    _, nt, nh, nw, d = x.shape
    cls_mask = torch.ones((n, int(self.pool == "tok")), dtype=torch.bool)
    if self.attention == "joint":
      x = self.embed(x.reshape(n, nt * nh * nw, d))
      tok_mask = None
      if tube_mask is not None:
        tok_mask = torch.cat([cls_mask, tube_mask.repeat_interleave(nh * nw, dim=1)], dim=1)
      return self._pool(self.encoder(x, tok_mask), tok_mask)
    x = self.spatial_encoder(self.spatial_embed(x.reshape(n * nt, nh * nw, d)))
    x = self.temporal_embed(self._pool(x, None).reshape(n, nt, d))
    t_mask = None if tube_mask is None else torch.cat([cls_mask, tube_mask], dim=1)
    return self._pool(self.temporal_encoder(x, t_mask), t_mask)

  def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    f = self.forward_features(x, mask)
    return f if self.head is None else self.head(f)
