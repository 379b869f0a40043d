"""Enhanced ResNet for ECG-image classification (``ecg_resnet50``; seed 003): a ResNet backbone plus five switchable
ECG modules and a dense head. Every switch is a constructor argument, so an ablation is a sweep over
``config.model.kwargs``; all on by default. Input: (B, H, W, 3) images normalised by the data pipeline (224 x 224 as
designed; the model does no input scaling). Output ``(logits, aux)``: ``aux["features"]`` the pooled head input
(float32), ``aux["components"]`` (B, 4) the calibration's P / QRS / T / ST scores when ``calibration`` is on.

Where each part sits (stage i = the backbone's ``stage{i}_*`` blocks, C_i its output map; R50 at 224: C1 256 x 56^2,
C2 512 x 28^2, C3 1024 x 14^2, C4 2048 x 7^2)::

  image -> backbone stem + stage 1 -> [multiscale] -> stages 2..4 -> C4 -> [attention] -> [calibration] -> C4'
  features = concat(GAP(C4'), [pyramid: GAP of each FPN level over C2, C3, C4'], [fusion: GAP(C1), GAP(C2)])
  -> head: (Dense -> BatchNorm -> ReLU -> Dropout) per ``head_units`` -> ``head_out`` Dense(num_classes)

* ``backbone``: the project's :class:`echojax.models.resnet.ResNet` (``depth`` 18/34/50/101/152, ``layout``,
  ``frozen_stages``), unchanged and under ``backbone``, so ``init.imagenet`` loads a torchvision (or Keras) ResNet
  file into it exactly as for EchoSDNet.
* ``multiscale`` (``MultiScaleBlock``, module ``multiscale``): in the backbone's path after stage 1 (the early,
  fine-grained features the description gives the 3/5/9/15 kernels to), through the ResNet's ``stage_hooks``. 1x1
  ``reduce`` to ``width`` channels (+BN+ReLU; the 15x15 kernels on 256 channels at 56^2 would cost 4x the whole
  ResNet50), four parallel convolutions 3x3 / 5x5 / 9x9 / 15x15 of ``width/4`` channels each (+BN+ReLU), concatenated,
  1x1 ``project`` back to C1's channels + BN, residual: ``relu(C1 + BN(project(...)))``. The projection's BN scale
  starts at zero, so a freshly built block is the identity and an ImageNet backbone's features pass unchanged.
* ``attention`` (``Attention``, module ``attention``; CBAM): channel attention ``sigmoid(MLP(avgpool) +
  MLP(maxpool))`` (shared 2-layer MLP, ``C/attention_reduction`` hidden, no biases), then spatial attention
  ``sigmoid(conv7x7([mean_c, max_c]))``; residual ``x + x * channel * spatial``. On C4.
* ``calibration`` (``Calibration``, module ``calibration``): K = ``components`` (4: P wave, QRS complex, T wave, ST
  segment) detectors, a 1x1 conv to K maps + sigmoid; each map's spatial mean is that component's score (B, K);
  a Dense K -> C + sigmoid turns the scores into per-channel gates, ``out = x * gates`` (squeeze-excitation style,
  driven by the detected components rather than by the channels themselves). On C4 after attention. The scores are
  returned as ``aux["components"]`` (written to predictions.csv as ``components_0..3``).
* ``pyramid`` (``Pyramid``, module ``pyramid``; FPN): lateral 1x1 convs (``pyramid_dim`` channels, default 4 x
  ``width`` = 256) on C2, C3 and C4' (``pyramid_stages``), top-down: each level adds the nearest-neighbour upsampled
  coarser level (index ``(i * n_in) // n_out``, exact at any size), then a 3x3 smoothing conv; each level is
  average-pooled and the levels concatenated.
* ``fusion``: multi-path fusion by CONCATENATION: the average-pooled low-level maps C1 (after ``multiscale``) and C2
  join the high-level pooled features before the head (no learned weights of its own).
* head: ``head_units`` (default (512, 256)) of Dense (no bias) -> BatchNorm -> ReLU -> Dropout(``dropout``), then
  ``head_out``; ``num_classes`` 0/None returns the features instead.

With every switch off and ``head_units=()`` the network IS a plain ResNet classifier (GAP + linear; the same
parameter count as ``resnet{depth}``, its ``head`` named ``head_out``); with ``head_units`` left at the default it is
that ResNet with the dense head. Extra BatchNorms: epsilon 1e-5, flax momentum 0.9 (torch's defaults). Training
needs a dropout RNG when ``head_units`` is non-empty and ``dropout`` > 0.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from echojax.errors import UserError
from echojax.models import layers
from echojax.models.resnet import ResNet, conv_init, dense_init

#: the calibration's default components, in the order of ``aux["components"]``
COMPONENTS = ("P", "QRS", "T", "ST")
MULTISCALE_KERNELS = (3, 5, 9, 15)
BN_EPS = 1e-5


def _bn(name: str, train: bool, dtype: Any, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPS, dtype=dtype,
                      param_dtype=jnp.float32, scale_init=scale_init, name=name)


def _conv(features: int, k: int, name: str, dtype: Any, bias: bool) -> nn.Conv:
  return layers.Conv(features, (k, k), padding=((k // 2, k // 2),) * 2, use_bias=bias, kernel_init=conv_init,
                     dtype=dtype, param_dtype=jnp.float32, name=name)


def _dense(features: int, name: str, dtype: Any, bias: bool = True) -> nn.Dense:
  return nn.Dense(features, use_bias=bias, kernel_init=dense_init, dtype=dtype, param_dtype=jnp.float32, name=name)


class MultiScaleBlock(nn.Module):
  """1x1 reduce -> parallel k x k convs (k in ``kernels``) -> concat -> 1x1 project -> BN, residual + ReLU."""
  width: int = 64
  kernels: Sequence[int] = MULTISCALE_KERNELS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    branch = max(1, self.width // len(self.kernels))
    h = nn.relu(_bn("reduce_bn", train, self.dtype)(_conv(self.width, 1, "reduce", self.dtype, False)(x)))
    ys = [nn.relu(_bn(f"branch{k}_bn", train, self.dtype)(_conv(branch, k, f"branch{k}", self.dtype, False)(h)))
          for k in self.kernels]
    y = _conv(x.shape[-1], 1, "project", self.dtype, False)(jnp.concatenate(ys, axis=-1))
    return nn.relu(x + _bn("project_bn", train, self.dtype, nn.initializers.zeros)(y))


class Attention(nn.Module):
  """CBAM: channel attention (shared MLP over avg- and max-pooled channels), then 7x7 spatial attention; residual."""
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    fc1 = _dense(max(1, c // self.reduction), "channel_fc1", self.dtype, bias=False)
    fc2 = _dense(c, "channel_fc2", self.dtype, bias=False)

    def mlp(v):
      return fc2(nn.relu(fc1(v)))

    channel = nn.sigmoid(mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2))))
    y = x * channel[:, None, None, :]
    s = jnp.concatenate([jnp.mean(y, axis=-1, keepdims=True), jnp.max(y, axis=-1, keepdims=True)], axis=-1)
    spatial = nn.sigmoid(_conv(1, 7, "spatial", self.dtype, True)(s))
    return x + y * spatial


class Calibration(nn.Module):
  """K component detectors (1x1 conv + sigmoid) -> scores (spatial means) -> per-channel gates. Returns (x', scores)."""
  components: int = len(COMPONENTS)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    maps = nn.sigmoid(_conv(self.components, 1, "detectors", self.dtype, True)(x))
    scores = jnp.mean(maps, axis=(1, 2))
    gates = nn.sigmoid(_dense(x.shape[-1], "gates", self.dtype)(scores))
    return x * gates[:, None, None, :], scores


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """(B, h, w, C) -> (B, H, W, C), nearest neighbour: row ``i`` reads ``(i * h) // H`` (the torch mirror gathers the
  same indices, so odd sizes agree exactly)."""
  for axis, n in ((1, size[0]), (2, size[1])):
    idx = (jnp.arange(n) * x.shape[axis]) // n
    x = jnp.take(x, idx, axis=axis)
  return x


class Pyramid(nn.Module):
  """FPN over stage maps (fine to coarse): lateral 1x1, top-down nearest upsampling + add, 3x3 smoothing, each level
  average-pooled; returns the pooled levels concatenated (B, len(stages) * dim)."""
  dim: int = 256
  stages: Sequence[int] = (2, 3, 4)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array]) -> jax.Array:
    lat = [_conv(self.dim, 1, f"lateral{s}", self.dtype, True)(m) for s, m in zip(self.stages, maps)]
    levels = [lat[-1]]
    for lvl in reversed(lat[:-1]):
      levels.insert(0, lvl + upsample_nearest(levels[0], lvl.shape[1:3]))
    pooled = [jnp.mean(_conv(self.dim, 3, f"smooth{s}", self.dtype, True)(p), axis=(1, 2))
              for s, p in zip(self.stages, levels)]
    return jnp.concatenate(pooled, axis=-1)


class EcgResNet(nn.Module):
  """ResNet backbone + multiscale / attention / calibration / pyramid / fusion + dense head (module docstring)."""
  depth: int = 50
  num_classes: int | None = 5
  width: int = 64
  dtype: Any = jnp.float32
  layout: str = "torchvision"
  frozen_stages: int = -1
  multiscale: bool = True
  pyramid: bool = True
  attention: bool = True
  calibration: bool = True
  fusion: bool = True
  head_units: Sequence[int] = (512, 256)
  dropout: float = 0.5
  pyramid_dim: int | None = None
  pyramid_stages: Sequence[int] = (2, 3, 4)
  attention_reduction: int = 16
  components: int = len(COMPONENTS)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 4:
      raise UserError(f"ecg_resnet expects images (B, H, W, C); got shape {tuple(x.shape)}")
    stages = tuple(int(s) for s in self.pyramid_stages)
    if self.pyramid and (not stages or any(s not in (1, 2, 3, 4) for s in stages) or list(stages) != sorted(set(stages))
                         or stages[-1] != 4):
      raise UserError(f"ecg_resnet pyramid_stages={list(stages)} (config field model.kwargs.pyramid_stages): give "
                      "increasing backbone stages from 1-4 ending with 4, e.g. [2, 3, 4]")
    hooks = ((1, MultiScaleBlock(self.width, dtype=self.dtype, name="multiscale")),) if self.multiscale else ()
    _, aux = ResNet(depth=self.depth, num_classes=0, width=self.width, dtype=self.dtype, layout=self.layout,
                    frozen_stages=self.frozen_stages, stage_hooks=hooks, return_stages=True, name="backbone")(x, train)
    maps = list(aux["stages"])
    out_aux = {}
    top = maps[3]
    if self.attention:
      top = Attention(self.attention_reduction, dtype=self.dtype, name="attention")(top)
    if self.calibration:
      top, scores = Calibration(self.components, dtype=self.dtype, name="calibration")(top)
      out_aux["components"] = scores.astype(jnp.float32)
    maps[3] = top
    parts = [jnp.mean(top, axis=(1, 2))]
    if self.pyramid:
      dim = self.pyramid_dim or 4 * self.width
      parts.append(Pyramid(dim, stages, dtype=self.dtype, name="pyramid")([maps[s - 1] for s in stages]))
    if self.fusion:
      parts += [jnp.mean(maps[0], axis=(1, 2)), jnp.mean(maps[1], axis=(1, 2))]
    feats = jnp.concatenate(parts, axis=-1).astype(jnp.float32)
    out_aux = {"features": feats, **out_aux}
    if not self.num_classes:
      return feats, out_aux
    h = feats
    for j, units in enumerate(self.head_units, start=1):
      h = _dense(int(units), f"head_dense{j}", self.dtype, bias=False)(h)
      h = nn.relu(_bn(f"head_bn{j}", train, self.dtype)(h))
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    logits = nn.Dense(self.num_classes, kernel_init=dense_init, bias_init=nn.initializers.zeros, dtype=self.dtype,
                      param_dtype=jnp.float32, name="head_out")(h)
    return logits.astype(jnp.float32), out_aux
