"""2D ResNets (torchvision v1.5 and Keras ``ResNet50`` layouts) and a per-frame wrapper for videos.

``ResNet(depth=18|34|50|101|152)`` mirrors torchvision's ``torchvision.models.resnet`` exactly, so that the
parameter counts equal torchvision's (resnet18 11,689,512; resnet50 25,557,032; resnet152 60,192,808 with a
1000-class head) and weights convert one-to-one:

* stem: 7x7/2 conv (pad 3, no bias) -> BN -> ReLU -> 3x3/2 max-pool (pad 1);
* four stages of BasicBlocks (depth 18/34) or Bottlenecks (50/101/152) with 64/128/256/512 x ``width/64``
  planes; the stride of a bottleneck sits on its 3x3 conv ("ResNet v1.5"); a 1x1 conv + BN shortcut
  whenever the stride or channel count changes;
* global average pool -> Dense head (none when ``num_classes`` is 0 / None: the pooled features are returned).

BatchNorm: epsilon 1e-5, flax momentum 0.9 (== torch momentum 0.1). Running statistics live in the
``batch_stats`` collection: train with ``model.apply(v, x, train=True, mutable=["batch_stats"])``, evaluate
with ``train=False`` (running averages; each item's output independent of the rest of the batch).
One training-only difference from torch: flax updates the running variance with the biased batch variance,
torch with the unbiased one (a factor n/(n-1) on the update; eval-mode outputs are unaffected).

``layout="keras"`` gives ``keras.applications.ResNet50``'s variant of the same network: convolutions WITH bias,
BN epsilon 1.001e-5, flax momentum 0.99, and the bottleneck stride on the FIRST 1x1 conv (not the 3x3).
Parameter names are the same in both layouts.

Parameter / module naming (the echoforge mirror uses the flax paths; torchvision and keras names matter only when
ImageNet weights are imported, echoforge/torchvision_names.py and echojax/pretrained.py)::

  flax path                                  torchvision name            keras name
  stem_conv/{kernel,bias}                    conv1.weight                conv1_conv
  stem_bn/{scale,bias} + batch_stats mean,var bn1.{weight,bias,running_*} conv1_bn
  stage{i}_block{k}/conv{j}                  layer{i}.{k}.conv{j}        conv{i+1}_block{k+1}_{j}_conv
  stage{i}_block{k}/bn{j}                    layer{i}.{k}.bn{j}          conv{i+1}_block{k+1}_{j}_bn
  stage{i}_block{k}/downsample_conv          layer{i}.{k}.downsample.0   conv{i+1}_block{k+1}_0_conv
  stage{i}_block{k}/downsample_bn            layer{i}.{k}.downsample.1   conv{i+1}_block{k+1}_0_bn
  head/{kernel,bias}                         fc.{weight,bias}            (predictions)

``i`` is 1..4 and ``k`` is 0-based (as torchvision's ``layer{i}.{k}``); ``j`` is 1..2 (basic) or 1..3
(bottleneck). Kernels are HWIO (torch OIHW = transpose ``(3, 2, 0, 1)``); the Dense kernel is (in, out)
(torch = ``.T``). BN ``scale`` = torch ``weight``, batch_stats ``mean``/``var`` = ``running_mean``/``running_var``.

``frozen_stages`` (mmdet convention): -1 freezes nothing; 0 freezes the stem; k freezes the stem and stages
1..k. A frozen part ALWAYS uses its BN running statistics (also when ``train=True``; its ``batch_stats`` never
change) and gradients stop at its output. Pair it with ``echojax.models.summary.freeze`` so the optimizer
leaves the frozen parameters untouched too (weight decay would otherwise move them).

``FrameResNet`` applies a 2D ResNet to every frame of a (B, T, H, W, C) video and returns (B, T, D) per-frame
features (submodule ``backbone``, so ``params["backbone"]`` holds ordinary 2D ResNet weights).

Inputs are expected normalised by the data pipeline; this module does no input scaling (see
``echojax.models.echosdnet`` for a model that does).
"""

from __future__ import annotations

from typing import Any, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from echoforge.archs import RESNET_BN_EPS, RESNET_STAGES
from echojax.models import layers
from echojax.errors import UserError

LAYOUTS = ("torchvision", "keras")

# torch's kaiming_normal_(mode="fan_out", nonlinearity="relu") for convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def layout_options(layout: str) -> dict[str, Any]:
  """Per-layout constants: conv bias, BN epsilon / momentum, and where a bottleneck puts its stride."""
  if layout == "torchvision":
    return dict(use_bias=False, epsilon=RESNET_BN_EPS[layout], momentum=0.9, stride_on="conv2")
  if layout == "keras":
    return dict(use_bias=True, epsilon=RESNET_BN_EPS[layout], momentum=0.99, stride_on="conv1")
  raise UserError(f"ResNet layout={layout!r} is unknown (config field model.layout); use one of {', '.join(LAYOUTS)}")


def _bn(name: str, *, frozen: bool, train: bool, opts: dict[str, Any], dtype: Any,
        scale_init=nn.initializers.ones) -> nn.BatchNorm:
  """BatchNorm with the layout's epsilon/momentum; a frozen one always uses its running statistics."""
  return nn.BatchNorm(use_running_average=frozen or not train, momentum=opts["momentum"],
                      epsilon=opts["epsilon"], dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init,
                      name=name)


def _conv(features: int, kernel: Sequence[int], stride: int | Sequence[int], padding, *, name: str,
          opts: dict[str, Any], dtype: Any) -> nn.Conv:
  strides = (stride,) * len(kernel) if isinstance(stride, int) else tuple(stride)
  return layers.Conv(features, tuple(kernel), strides=strides, padding=padding, use_bias=opts["use_bias"],
                 kernel_init=conv_init, dtype=dtype, param_dtype=jnp.float32, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs (torchvision ``BasicBlock``); the stride sits on the first."""
  planes: int
  stride: int = 1
  layout: str = "torchvision"
  frozen: bool = False
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    o = layout_options(self.layout)
    kw = dict(frozen=self.frozen, train=train, opts=o, dtype=self.dtype)
    y = _conv(self.planes, (3, 3), self.stride, ((1, 1), (1, 1)), name="conv1", opts=o, dtype=self.dtype)(x)
    y = nn.relu(_bn("bn1", **kw)(y))
    y = _conv(self.planes, (3, 3), 1, ((1, 1), (1, 1)), name="conv2", opts=o, dtype=self.dtype)(y)
    last_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = _bn("bn2", scale_init=last_init, **kw)(y)
    if self.stride != 1 or x.shape[-1] != self.planes:
      x = _conv(self.planes, (1, 1), self.stride, "VALID", name="downsample_conv", opts=o, dtype=self.dtype)(x)
      x = _bn("downsample_bn", **kw)(x)
    return nn.relu(y + x)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (x4 channels). torchvision strides the 3x3 (v1.5); Keras strides the first 1x1."""
  planes: int
  stride: int = 1
  layout: str = "torchvision"
  frozen: bool = False
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    o = layout_options(self.layout)
    kw = dict(frozen=self.frozen, train=train, opts=o, dtype=self.dtype)
    s1, s2 = (self.stride, 1) if o["stride_on"] == "conv1" else (1, self.stride)
    out = self.planes * self.expansion
    y = _conv(self.planes, (1, 1), s1, "VALID", name="conv1", opts=o, dtype=self.dtype)(x)
    y = nn.relu(_bn("bn1", **kw)(y))
    y = _conv(self.planes, (3, 3), s2, ((1, 1), (1, 1)), name="conv2", opts=o, dtype=self.dtype)(y)
    y = nn.relu(_bn("bn2", **kw)(y))
    y = _conv(out, (1, 1), 1, "VALID", name="conv3", opts=o, dtype=self.dtype)(y)
    last_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = _bn("bn3", scale_init=last_init, **kw)(y)
    if self.stride != 1 or x.shape[-1] != out:
      x = _conv(out, (1, 1), self.stride, "VALID", name="downsample_conv", opts=o, dtype=self.dtype)(x)
      x = _bn("downsample_bn", **kw)(x)
    return nn.relu(y + x)


def check_depth(depth: int, allowed: dict[int, Any], family: str) -> None:
  if depth not in allowed:
    raise UserError(f"{family} depth={depth} is not supported (config field model.depth); "
                    f"use one of {', '.join(map(str, sorted(allowed)))}")


class ResNet(nn.Module):
  """torchvision-exact 2D ResNet on (B, H, W, C) images; see the module docstring for names and options.

  Returns ``(logits, {"features": pooled})`` or, with ``num_classes`` 0 / None, ``(pooled, {"features": pooled})``.
  Logits / features are float32 whatever the compute ``dtype``.
  """
  depth: int = 50
  num_classes: int | None = 1000
  width: int = 64
  dtype: Any = jnp.float32
  layout: str = "torchvision"
  frozen_stages: int = -1
  zero_init_residual: bool = False
  #: ``((stage, module), ...)``: ``module(x, train)`` runs on stage ``stage``'s output before the next stage (after
  #: a frozen stage's stop-gradient). A hook belongs to the model that built it (its parameters sit beside this
  #: network's, not inside it), so the ResNet's own parameters, names and ImageNet import stay as they are.
  stage_hooks: Sequence[tuple[int, Any]] = ()
  #: also return each stage's output map (stages 1..4, after its hook) as ``aux["stages"]``
  return_stages: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    check_depth(self.depth, RESNET_STAGES, "ResNet")
    hooks = dict(self.stage_hooks)
    stages = []
    if x.ndim != 4:
      raise UserError(f"ResNet expects images (B, H, W, C); got shape {tuple(x.shape)} "
                      "(for videos use FrameResNet or a video model)")
    o = layout_options(self.layout)
    kind, blocks = RESNET_STAGES[self.depth]
    block_cls = BasicBlock if kind == "basic" else Bottleneck
    x = jnp.asarray(x, self.dtype)
    stem_frozen = self.frozen_stages >= 0
    x = _conv(self.width, (7, 7), 2, ((3, 3), (3, 3)), name="stem_conv", opts=o, dtype=self.dtype)(x)
    x = nn.relu(_bn("stem_bn", frozen=stem_frozen, train=train, opts=o, dtype=self.dtype)(x))
    x = layers.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    if self.frozen_stages == 0:
      x = jax.lax.stop_gradient(x)
    for i, n in enumerate(blocks, start=1):
      frozen = self.frozen_stages >= i
      for k in range(n):
        stride = 2 if (i > 1 and k == 0) else 1
        x = block_cls(self.width * 2 ** (i - 1), stride=stride, layout=self.layout, frozen=frozen,
                      zero_init_residual=self.zero_init_residual, dtype=self.dtype,
                      name=f"stage{i}_block{k}")(x, train)
      if self.frozen_stages == i:
        x = jax.lax.stop_gradient(x)
      if i in hooks:
        x = hooks[i](x, train)
      stages.append(x)
    feats = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
    aux = {"features": feats, **({"stages": tuple(stages)} if self.return_stages else {})}
    if not self.num_classes:
      return feats, aux
    logits = nn.Dense(self.num_classes, kernel_init=dense_init, bias_init=nn.initializers.zeros,
                      dtype=self.dtype, param_dtype=jnp.float32, name="head")(feats)
    return logits.astype(jnp.float32), aux


def feature_dim(depth: int, width: int = 64) -> int:
  """Size of the pooled features of ``ResNet(depth, width)`` (512 x width/64, x4 for bottlenecks)."""
  check_depth(depth, RESNET_STAGES, "ResNet")
  return width * 8 * (4 if RESNET_STAGES[depth][0] == "bottleneck" else 1)


class ChannelDropout(nn.Module):
  """Drops whole channels of (B, H, W, C) maps (torch's ``Dropout2d``): the "CNN dropout" of a ResNet stage hook."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return nn.Dropout(self.rate, broadcast_dims=(1, 2))(x, deterministic=not train)


class FrameResNet(nn.Module):
  """A 2D ResNet applied to every frame of a (B, T, H, W, C) video -> (B, T, D) per-frame features.

  Frames are folded into the batch (B*T images), so BatchNorm statistics pool over all frames of all clips.
  With ``num_classes`` > 0 a per-frame Dense head (``head``) gives (B, T, num_classes); the aux dict always
  has ``features`` (B, T, D). Weights of the 2D network sit under ``backbone``.

  Transfer knobs (the LVAD study's "fully-connected dropout / L1 / CNN dropout"; L1 is ``config.optim.l1``):
  ``head_units`` adds fully-connected layers ``fc0, fc1, ...`` (Dense-ReLU) between the features and the head;
  ``dropout`` drops the input of each of them and of the head (training only); ``cnn_dropout`` drops whole
  channels of the backbone's last feature map (:class:`ChannelDropout` as a stage-4 hook, parameter-free, so an EF
  run's weights load unchanged; after every stage, a rate of 0.8 kept too little of the signal to learn from). ``pool``: "frames" (the default: the head on every frame, the trainer averages the per-frame
  outputs) or "mean_std" (the clip's per-frame features pooled over its valid frames, ``mask``, as their mean and
  standard deviation concatenated, then ``fc*`` and the head: one output per clip; the standard deviation carries
  the cardiac cycle's change, which a per-frame head averages away).
  """
  depth: int = 18
  num_classes: int | None = 0
  width: int = 64
  dtype: Any = jnp.float32
  layout: str = "torchvision"
  frozen_stages: int = -1
  head_units: Sequence[int] = ()
  dropout: float = 0.0
  cnn_dropout: float = 0.0
  pool: str = "frames"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               mask: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 5:
      raise UserError(f"FrameResNet expects videos (B, T, H, W, C); got shape {tuple(x.shape)}")
    if self.pool not in ("frames", "mean_std"):
      raise UserError(f"FrameResNet pool={self.pool!r} (config field model.kwargs.pool): use 'frames' or 'mean_std'")
    for field in ("dropout", "cnn_dropout"):
      if not 0.0 <= getattr(self, field) < 1.0:
        raise UserError(f"FrameResNet {field}={getattr(self, field)} (config field model.kwargs.{field}) must be "
                        "in [0, 1)")
    hooks = ((4, ChannelDropout(self.cnn_dropout, name="cnn_dropout")),) if self.cnn_dropout else ()
    feats = apply_per_frame(ResNet(depth=self.depth, num_classes=0, width=self.width, dtype=self.dtype,
                                   layout=self.layout, frozen_stages=self.frozen_stages, stage_hooks=hooks,
                                   name="backbone"), x, train)
    if not self.num_classes:
      return feats, {"features": feats}
    h = feats
    if self.pool == "mean_std":
      w = jnp.ones(feats.shape[:2], jnp.float32) if mask is None else mask.astype(jnp.float32)
      w = w[..., None] / jnp.maximum(w.sum(axis=1), 1.0)[:, None, None]
      mean = jnp.sum(feats * w, axis=1)
      std = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(feats - mean[:, None]) * w, axis=1), 0.0) + 1e-6)
      h = jnp.concatenate([mean, std], axis=-1)
    for i, units in enumerate(self.head_units):
      h = nn.Dropout(self.dropout)(h, deterministic=not train)
      h = nn.relu(nn.Dense(int(units), kernel_init=dense_init, dtype=self.dtype, param_dtype=jnp.float32,
                           name=f"fc{i}")(h))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    out = nn.Dense(self.num_classes, kernel_init=dense_init, dtype=self.dtype, param_dtype=jnp.float32,
                   name="head")(h)
    return out.astype(jnp.float32), {"features": feats}


def apply_per_frame(backbone: nn.Module, x: jax.Array, train: bool) -> jax.Array:
  """Calls a 2D ``(B,H,W,C) -> (out, aux)`` module on each frame of (B, T, H, W, C); returns (B, T, ...).

  For use inside another module's ``@nn.compact`` body (pass a bound submodule).
  """
  out, _ = backbone(einops.rearrange(x, "b t h w c -> (b t) h w c"), train)
  return einops.rearrange(out, "(b t) ... -> b t ...", b=x.shape[0])
