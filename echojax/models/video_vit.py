"""Video Vision Transformer ("video_vit"): tubelet embedding + joint or factorised space-time attention (ViViT).

Input (B, T, H, W, C) -> Conv3D tubelet embedding (kernel = stride = (tubelet, patch, patch)) -> tokens
(B, T', H', W', D) with T' = T / tubelet, H' = H / patch, W' = W / patch. Variant strings extend the image ViT's:
``"S/16x2"`` = ViT-S width/depth/heads, 16x16 patches, 2-frame tubelets (``"mu/8x2"`` is a tiny test size).

``attention``:
- ``"joint"`` (ViViT model 1): one encoder over all T'*H'*W' tokens (+ class token) with a learned position
  embedding per token. Cost grows with (T'H'W')^2.
- ``"factorised"`` (ViViT model 2, factorised encoder): a spatial encoder (``depth`` blocks) runs on each tubelet
  time step's H'*W' tokens with its own class token; the T' per-step class tokens then go (with a temporal class
  token and temporal position embedding) through a temporal encoder of ``temporal_depth`` blocks (default 4, or the
  spatial depth when that is smaller).

``mask`` (B, T) bool, False = padded frame: a tubelet is padded when *all* its frames are, and padded tubelets are
excluded as attention keys (and from "gap" pooling), so their content cannot change valid outputs. Returns
``(logits float32 (B, num_classes), {"features": pooled (B, D)})``; ``num_classes`` 0/None returns the features.
T, H, W are fixed after init (position embeddings are sized then).
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp

from echojax.models import layers
from echojax.errors import UserError
from echojax.models.vit import Encoder, TokenPrep, decode_size, masked_mean

ATTENTION_MODES = ("joint", "factorised")


def decode_video_variant(variant: str, field: str = "model.variant") -> dict[str, int]:
  """``"S/16x2"`` -> dict(width, depth, mlp_dim, num_heads, patch_size=16, tubelet_size=2)."""
  size, _, rest = variant.partition("/")
  out = decode_size(size, field)
  if rest:
    patch, _, tube = rest.partition("x")
    try:
      out["patch_size"] = int(patch)
      if tube:
        out["tubelet_size"] = int(tube)
    except ValueError:
      raise UserError(f"bad video variant {variant!r} in {field}; write <size>/<patch>x<frames>, e.g. 'S/16x2'."
                      ) from None
  return out


class VideoViT(nn.Module):
  """ViViT with tubelet embedding; see the module docstring for modes, mask handling and variants."""

  num_classes: int | None = 2
  variant: str = "S/16x2"
  attention: str = "factorised"
  width: int | None = None
  depth: int | None = None
  mlp_dim: int | None = None
  num_heads: int | None = None
  patch_size: int | None = None
  tubelet_size: int | None = None
  temporal_depth: int | None = None
  dropout: float = 0.0
  attention_dropout: float = 0.0
  pool: str = "tok"
  dtype: Any = jnp.float32

  def hparams(self) -> dict[str, int]:
    """Variant sizes with explicit overrides applied; defaults patch 16, tubelet 2."""
    hp = decode_video_variant(self.variant)
    hp.setdefault("patch_size", 16)
    hp.setdefault("tubelet_size", 2)
    for k in ("width", "depth", "mlp_dim", "num_heads", "patch_size", "tubelet_size"):
      if getattr(self, k) is not None:
        hp[k] = getattr(self, k)
    hp["temporal_depth"] = self.temporal_depth if self.temporal_depth is not None else min(4, hp["depth"])
    return hp

  def _encoder(self, hp: dict[str, int], depth: int, name: str) -> Encoder:
    return Encoder(depth, hp["num_heads"], hp["mlp_dim"], self.dropout, self.attention_dropout, self.dtype, name=name)

  def _pool(self, x: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
    return x[:, 0] if self.pool == "tok" else masked_mean(x, mask)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, mask: jnp.ndarray | None = None
               ) -> tuple[jnp.ndarray, dict]:
    hp = self.hparams()
    p, tt = hp["patch_size"], hp["tubelet_size"]
    if x.ndim != 5:
      raise UserError(f"video_vit expects videos (B,T,H,W,C), got shape {x.shape}; for images use model.name='vit'.")
    b, t, h, w, _ = x.shape
    if t % tt or h % p or w % p:
      raise UserError(f"video_vit tubelet {tt}x{p}x{p} (model.variant={self.variant!r}) does not divide the clip "
                      f"shape T={t}, H={h}, W={w}; change data.num_frames / data.size or the variant.")
    if self.attention not in ATTENTION_MODES:
      raise UserError(f"model.attention must be one of {', '.join(ATTENTION_MODES)}, got {self.attention!r}.")
    if self.pool not in ("tok", "gap"):
      raise UserError(f"model.pool must be 'tok' or 'gap', got {self.pool!r}.")
    if mask is not None and mask.shape != (b, t):
      raise UserError(f"frame mask has shape {mask.shape}, expected {(b, t)} (batch, frames).")
    tube_mask = None if mask is None else jnp.any(mask.astype(bool).reshape(b, t // tt, tt), axis=-1)

    x = x.astype(self.dtype)
    if mask is not None:  # padded frames get attention weight 0, but 0 * NaN would still be NaN
      x = jnp.where(mask.astype(bool)[:, :, None, None, None], x, jnp.zeros((), x.dtype))
    x = layers.Conv(hp["width"], (tt, p, p), strides=(tt, p, p), padding="VALID", dtype=self.dtype,
                name="tubelet_embedding")(x)
    _, nt, nh, nw, d = x.shape
    use_cls = self.pool == "tok"
    cls_mask = jnp.ones((b, int(use_cls)), bool)

    if self.attention == "joint":
      x = einops.rearrange(x, "b t h w d -> b (t h w) d")
      tok_mask = None if tube_mask is None else jnp.repeat(tube_mask, nh * nw, axis=1)
      x = TokenPrep(use_cls, self.dtype, name="embed")(x)
      if tok_mask is not None:
        tok_mask = jnp.concatenate([cls_mask, tok_mask], axis=1)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = self._encoder(hp, hp["depth"], "encoder")(x, train, tok_mask)
      feats = self._pool(x, tok_mask)
    else:
      x = einops.rearrange(x, "b t h w d -> (b t) (h w) d")
      x = TokenPrep(use_cls, self.dtype, name="spatial_embed")(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = self._encoder(hp, hp["depth"], "spatial_encoder")(x, train)
      x = einops.rearrange(self._pool(x, None), "(b t) d -> b t d", b=b)
      x = TokenPrep(use_cls, self.dtype, name="temporal_embed")(x)
      t_mask = None if tube_mask is None else jnp.concatenate([cls_mask, tube_mask], axis=1)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = self._encoder(hp, hp["temporal_depth"], "temporal_encoder")(x, train, t_mask)
      feats = self._pool(x, t_mask)

    aux = {"features": feats.astype(jnp.float32)}
    if not self.num_classes:
      return feats.astype(jnp.float32), aux
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(feats)
    return logits.astype(jnp.float32), aux


def video_vit(**kwargs) -> VideoViT:
  """``get_model("video_vit", variant="S/16x2", attention="factorised", num_classes=...)``."""
  return VideoViT(**kwargs)
