"""Image Vision Transformer ("vit") and the pre-LN transformer pieces the video/temporal models share.

Layout follows torchvision's ``vit_b_16`` so weights can be exported 1:1 to PyTorch: a conv patch embedding
(``conv_proj``), a learned class token (``cls``, zeros at init), a learned position embedding over
``1 + num_patches`` tokens (``pos_embedding``, normal std 0.02), ``depth`` pre-LayerNorm blocks (LayerNorm eps 1e-6,
multi-head self-attention with biases, exact-GELU MLP), a final LayerNorm (``encoder_norm``) and a linear ``head``.
ViT-B/16 with 1000 classes has exactly 86,567,656 parameters (as torchvision's).

Sizes come from a big_vision-style variant string ``"<size>/<patch>"``: size in mu (a tiny test size), Ti, S, M,
B, L, H; e.g. ``ViT(variant="S/16")``. Any of width/depth/mlp_dim/num_heads/patch_size may be overridden, which is
how smoke configs build tiny models (``ViT(variant="mu/8")`` has ~15k parameters).
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp

from echoforge.archs import VIT_LN_EPS as LN_EPS
from echoforge.archs import VIT_SIZES
from echojax.models import layers
from echojax.errors import UserError



def decode_size(size: str, field: str = "model.variant") -> dict[str, int]:
  """``"S"`` -> dict(width, depth, mlp_dim, num_heads); UserError naming ``field`` when the size is unknown."""
  if size not in VIT_SIZES:
    raise UserError(f"unknown transformer size {size!r} in {field}; use one of {', '.join(VIT_SIZES)} "
                    f"(e.g. 'S/16').")
  width, depth, mlp_dim, num_heads = VIT_SIZES[size]
  return dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads)


def decode_variant(variant: str, field: str = "model.variant") -> dict[str, int]:
  """``"B/16"`` -> dict(width, depth, mlp_dim, num_heads, patch_size). A bare size ("B") leaves patch_size out."""
  size, _, patch = variant.partition("/")
  out = decode_size(size, field)
  if patch:
    try:
      out["patch_size"] = int(patch)
    except ValueError:
      raise UserError(f"bad patch size {patch!r} in {field}={variant!r}; write e.g. 'S/16'.") from None
  return out


def key_mask_to_attention(mask: jnp.ndarray | None) -> jnp.ndarray | None:
  """(B, N) bool key mask -> (B, 1, 1, N) attention mask: every query ignores padded keys."""
  if mask is None:
    return None
  return mask[:, None, None, :].astype(bool)


class MlpBlock(nn.Module):
  """Dense(mlp_dim) -> exact GELU -> dropout -> Dense(width) -> dropout (torchvision's MLPBlock)."""

  mlp_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    width = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x)
    x = nn.gelu(x, approximate=False)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(width, dtype=self.dtype, name="fc2")(x)
    return nn.Dropout(self.dropout, deterministic=not train)(x)


class EncoderBlock(nn.Module):
  """Pre-LN transformer block: x + Attn(LN(x)); x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="ln_1")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, dtype=self.dtype, dropout_rate=self.attention_dropout, name="attention"
    )(y, y, mask=mask, deterministic=not train)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    x = x + y
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="ln_2")(x)
    y = MlpBlock(self.mlp_dim, self.dropout, self.dtype, name="mlp")(y, train)
    return x + y


class Encoder(nn.Module):
  """``depth`` EncoderBlocks then a final LayerNorm. ``mask``: optional (B, N) bool, False = padded token."""

  depth: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    attn_mask = key_mask_to_attention(mask)
    for i in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, self.attention_dropout, self.dtype,
                       name=f"layer_{i}")(x, train, attn_mask)
    return nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="encoder_norm")(x)


class TokenPrep(nn.Module):
  """Prepends a learned class token (zeros at init) and adds a learned position embedding (normal std 0.02)."""

  use_cls: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, _, d = x.shape
    if self.use_cls:
      cls = self.param("cls", nn.initializers.zeros, (1, 1, d))
      x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
    pos = self.param("pos_embedding", nn.initializers.normal(stddev=0.02), (1, x.shape[1], d))
    return x + pos.astype(x.dtype)


def masked_mean(x: jnp.ndarray, mask: jnp.ndarray | None, axis: int = 1) -> jnp.ndarray:
  """Mean of ``x`` over ``axis`` counting only positions where ``mask`` (shape x.shape[:axis+1]) is True.

  Padded positions are removed with ``where`` (not multiplied), so NaN/inf in padded frames cannot leak in.
  """
  if mask is None:
    return jnp.mean(x, axis=axis)
  m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)).astype(bool)
  total = jnp.sum(jnp.where(m, x, 0), axis=axis)
  count = jnp.maximum(jnp.sum(m, axis=axis), 1).astype(x.dtype)
  return total / count


class ViT(nn.Module):
  """Image ViT: (B, H, W, C) -> (logits (B, num_classes) float32, aux {"features": pooled (B, width)}).

  ``num_classes`` 0/None returns the pooled features as the output. ``pool``: "tok" (class token, torchvision)
  or "gap" (mean of patch tokens). H and W must be multiples of the patch size and fixed after init (the
  position embedding is sized at init).
  """

  num_classes: int | None = 1000
  variant: str = "B/16"
  width: int | None = None
  depth: int | None = None
  mlp_dim: int | None = None
  num_heads: int | None = None
  patch_size: int | None = None
  dropout: float = 0.0
  attention_dropout: float = 0.0
  pool: str = "tok"
  dtype: Any = jnp.float32

  def hparams(self) -> dict[str, int]:
    """The variant's sizes with any explicit overrides applied."""
    hp = decode_variant(self.variant)
    hp.setdefault("patch_size", 16)
    for k in ("width", "depth", "mlp_dim", "num_heads", "patch_size"):
      if getattr(self, k) is not None:
        hp[k] = getattr(self, k)
    return hp

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, dict]:
    hp = self.hparams()
    p = hp["patch_size"]
    if x.ndim != 4:
      raise UserError(f"ViT expects images (B,H,W,C), got shape {x.shape}; for videos use model.name='video_vit'.")
    if x.shape[1] % p or x.shape[2] % p:
      raise UserError(f"ViT patch size {p} does not divide the image size {x.shape[1:3]}; change data.size or "
                      f"the patch in model.variant.")
    if self.pool not in ("tok", "gap"):
      raise UserError(f"model.pool must be 'tok' or 'gap', got {self.pool!r}.")
    x = x.astype(self.dtype)
    x = layers.Conv(hp["width"], (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="conv_proj")(x)
    x = einops.rearrange(x, "b h w d -> b (h w) d")
    x = TokenPrep(use_cls=self.pool == "tok", dtype=self.dtype, name="embed")(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = Encoder(hp["depth"], hp["num_heads"], hp["mlp_dim"], self.dropout, self.attention_dropout, self.dtype,
                name="encoder")(x, train)
    feats = x[:, 0] if self.pool == "tok" else jnp.mean(x, axis=1)
    aux = {"features": feats.astype(jnp.float32)}
    if not self.num_classes:
      return feats.astype(jnp.float32), aux
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(feats)
    return logits.astype(jnp.float32), aux


def vit(**kwargs) -> ViT:
  """``get_model("vit", variant="S/16", num_classes=...)``."""
  return ViT(**kwargs)
