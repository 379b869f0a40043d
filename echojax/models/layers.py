"""The convolution every model family uses, with the formulation chosen per device.

``Conv`` is ``flax.linen.Conv`` (same parameters, same names, same numbers up to float rounding) whose
``conv_general_dilated`` is :func:`conv_general_dilated`. On accelerators that is ``lax.conv_general_dilated``
itself. On the CPU (XLA:CPU in the pinned jaxlib) it rewrites the convolutions that XLA compiles slowly, as measured
by ``benchmarks/train_step.py`` and ``benchmarks/conv.py``:

* **3D convolutions become 2D ones.** XLA:CPU runs a 3D convolution (and above all its weight gradient, a 3D
  convolution whose window is a whole activation) through a generic kernel, 2D convolutions through a tuned one.
  A (1, kh, kw) kernel folds time into the batch; a (kt, 1, 1) kernel treats H*W as one spatial axis; a full
  (kt, kh, kw) kernel is the sum of kt 2D convolutions over strided time slices. The autodiff of these is 2D
  convolutions again.
* **Depthwise convolutions** (one filter per channel, EfficientNet, X3D) become a sum of shifted, scaled slices:
  elementwise work XLA fuses, where its grouped convolution is 5-10x slower (in 3D the weight gradient stays
  XLA's, as 2D grouped convolutions over the time taps).
* ``compiler_options()``: XLA:CPU's default hands 2D convolutions to YNNPACK, whose weight-gradient convolution is
  2-3x slower than XLA's own; the jits that run models (train step, evaluation, prediction) pass the options that
  keep YNNPACK for reductions only.

``ECHOJAX_CONV=xla`` turns all of this off (plain ``lax.conv_general_dilated``, XLA's default options), e.g. to
compare; ``auto`` (the default) applies it on the CPU only, to convolutions above :data:`MIN_REWRITE_WORK`;
``cpu`` applies it to every convolution (the tests of the formulations).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

#: XLA:CPU options for jits that run models: YNNPACK fusions for reductions only (its default also takes 2D
#: convolutions, whose weight gradients it computes 2-3x slower than XLA's Eigen kernels on this project's models).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


#: A convolution with less work than this (output elements x kernel taps x input channels per group, about
#: 20 MFLOP forward; a tenth of it for depthwise ones, which XLA runs 10x slower) stays XLA's own under
#: ``ECHOJAX_CONV=auto``: at that size XLA's kernels cost well under a millisecond, and the rewrites would only add
#: compile time (tests and smoke configs compile far more than they run).
MIN_REWRITE_WORK = 10_000_000


def _mode() -> str:
  mode = os.environ.get("ECHOJAX_CONV", "auto").lower()
  if mode not in ("auto", "xla", "cpu"):
    raise ValueError(f"ECHOJAX_CONV={mode!r}; use auto (default), xla or cpu (the CPU formulations at every size)")
  return mode


def conv_impl() -> str:
  """"cpu" (the rewrites above) or "xla" (lax.conv_general_dilated as is), from ECHOJAX_CONV and the backend."""
  mode = _mode()
  if mode == "auto":
    return "cpu" if jax.default_backend() == "cpu" else "xla"
  return mode


def compiler_options() -> dict[str, str] | None:
  """``jax.jit(..., compiler_options=...)`` for jits that run a model: the CPU options, or None."""
  return dict(CPU_COMPILER_OPTIONS) if conv_impl() == "cpu" else None


def jit(fn, **kwargs):
  """``jax.jit`` with :func:`compiler_options` (the one way echojax jits a model's forward or train step)."""
  return jax.jit(fn, compiler_options=compiler_options(), **kwargs)


def _channels_last(dn, nd: int) -> bool:
  if dn is None:
    return False
  if isinstance(dn, lax.ConvDimensionNumbers):
    return (tuple(dn.lhs_spec) == (0, nd + 1, *range(1, nd + 1)) and tuple(dn.out_spec) == tuple(dn.lhs_spec)
            and tuple(dn.rhs_spec) == (nd + 1, nd, *range(nd)))
  spatial = "DHW"[-nd:] if nd <= 3 else None
  return spatial is not None and tuple(dn) == (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def _pads(padding, in_shape: Sequence[int], kernel: Sequence[int], strides, dilation) -> list[tuple[int, int]]:
  if isinstance(padding, str):
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    return [tuple(p) for p in lax.padtype_to_pads(in_shape, dilated, strides, padding)]
  return [tuple(int(v) for v in p) for p in padding]


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """``lax.conv_general_dilated`` with the CPU formulations of the module docstring (channels-last only; any other
  case is passed through)."""
  nd = lhs.ndim - 2
  plain = functools.partial(lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                            feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                            precision=precision, preferred_element_type=preferred_element_type)
  if (conv_impl() != "cpu" or nd not in (1, 2, 3) or batch_group_count != 1 or not _channels_last(dimension_numbers, nd)
      or any(d != 1 for d in (lhs_dilation or ()))):
    return plain()
  strides = tuple(window_strides)
  dilation = tuple(rhs_dilation or (1,) * nd)
  kernel = rhs.shape[:nd]
  cin, cout = lhs.shape[-1], rhs.shape[-1]
  depthwise = feature_group_count > 1 and feature_group_count == cin == cout and rhs.shape[-2] == 1
  out_elements = lhs.shape[0] * math.prod(lhs.shape[1:-1]) // math.prod(strides) * cout
  work = out_elements * math.prod(kernel) * rhs.shape[-2]
  if _mode() == "auto" and work < MIN_REWRITE_WORK / (10 if depthwise else 1):  # XLA's depthwise is 10x slower
    return plain()
  pads = _pads(padding, lhs.shape[1:-1], kernel, strides, dilation)
  if depthwise:
    return _depthwise(lhs, rhs, strides, pads, dilation, preferred_element_type)
  if nd != 3:
    return plain()
  return _conv3d_as_2d(lhs, rhs, strides, pads, dilation, feature_group_count, precision, preferred_element_type)


def _conv2d(x, w, strides, pads, dilation, groups, precision, out_type):
  return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=groups, precision=precision, preferred_element_type=out_type)


def _conv3d_as_2d(x, w, strides, pads, dilation, groups, precision, out_type):
  n, _, h, wd, c = x.shape
  kt, kh, kw = w.shape[:3]
  st, dt = strides[0], dilation[0]
  if pads[0] != (0, 0):
    x = jnp.pad(x, ((0, 0), pads[0], (0, 0), (0, 0), (0, 0)))
  t = x.shape[1]
  t_out = (t - dt * (kt - 1) - 1) // st + 1
  if kh == kw == 1 and strides[1:] == (1, 1) and pads[1:] == [(0, 0), (0, 0)]:  # temporal: H*W is one axis
    y = _conv2d(x.reshape(n, t, h * wd, c), w.reshape(kt, 1, *w.shape[3:]), (st, 1), [(0, 0), (0, 0)], (dt, 1),
                groups, precision, out_type)
    return y.reshape(n, t_out, h, wd, y.shape[-1])

  def tap(a):  # the 2D convolution of time tap ``a`` over the output's time steps folded into the batch
    xs = lax.slice_in_dim(x, a * dt, a * dt + st * (t_out - 1) + 1, stride=st, axis=1)
    y = _conv2d(xs.reshape(n * t_out, h, wd, c), w[a], strides[1:], pads[1:], dilation[1:], groups, precision,
                out_type)
    return y.reshape(n, t_out, *y.shape[1:])

  y = tap(0)
  for a in range(1, kt):
    y = y + tap(a)
  return y


def _depthwise(x, w, strides, pads, dilation, out_type):
  """Depthwise convolution as shifted slices. In 3D (X3D) the weight gradient is XLA's grouped 2D convolutions over
  the time taps (:func:`_depthwise_vjp`): faster there than 27 reductions, and a third less to compile. In 1D/2D
  (EfficientNet) plain autodiff of the slices measures faster: XLA's weight-gradient convolution needs its
  activations transposed, which costs more in the model than in the layer alone."""
  if x.ndim == 5:
    return _depthwise_vjp(x, w, tuple(strides), tuple(tuple(p) for p in pads), tuple(dilation), out_type)
  return _depthwise_shifted(x, w, strides, pads, dilation, out_type)


def _depthwise_shifted(x, w, strides, pads, dilation, out_type):
  """One filter per channel: sum over kernel taps of the strided slice times the tap's per-channel weights."""
  nd = x.ndim - 2
  kernel = w.shape[:nd]
  acc_type = jnp.promote_types(out_type or x.dtype, jnp.float32)
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  out = [(x.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(nd)]
  y = None
  for idx in itertools.product(*(range(k) for k in kernel)):
    start = [0] + [idx[i] * dilation[i] for i in range(nd)] + [0]
    limit = [x.shape[0]] + [start[1 + i] + strides[i] * (out[i] - 1) + 1 for i in range(nd)] + [x.shape[-1]]
    term = lax.slice(x, start, limit, (1, *strides, 1)).astype(acc_type) * w[idx][0].astype(acc_type)
    y = term if y is None else y + term
  return y.astype(out_type or jnp.result_type(x.dtype, w.dtype))


def _depthwise_grouped(x, w, strides, pads, dilation, out_type):
  """The same 3D depthwise convolution as XLA's grouped 2D convolutions over the time taps (for its gradient)."""
  return _conv3d_as_2d(x, w, strides, list(pads), dilation, x.shape[-1], None, out_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _depthwise_vjp(x, w, strides, pads, dilation, out_type):
  return _depthwise_shifted(x, w, strides, pads, dilation, out_type)


def _depthwise_fwd(x, w, strides, pads, dilation, out_type):
  return _depthwise_shifted(x, w, strides, pads, dilation, out_type), (x, w)


def _depthwise_bwd(strides, pads, dilation, out_type, res, g):
  """Input gradient: the transpose of the shifted sum (padded slices, elementwise); weight gradient: XLA's."""
  x, w = res
  dx = jax.vjp(lambda x: _depthwise_shifted(x, w, strides, pads, dilation, out_type), x)[1](g)[0]
  dw = jax.vjp(lambda w: _depthwise_grouped(x, w, strides, pads, dilation, out_type), w)[1](g)[0]
  return dx, dw


_depthwise_vjp.defvjp(_depthwise_fwd, _depthwise_bwd)


def max_pool(x, window: Sequence[int], strides: Sequence[int] | None = None, padding="VALID"):
  """``flax.linen.max_pool`` (channels last, batch first); on the CPU the max of shifted slices with a gradient
  that goes, as XLA's select-and-scatter, to the first maximum of each window (row-major), computed elementwise.

  XLA:CPU expands select-and-scatter into a variadic reduce-window over four full-size index arrays plus a
  scatter: a third of a ResNet-18 train step's non-convolution time."""
  window = tuple(window)
  strides = tuple(strides or (1,) * len(window))
  if conv_impl() != "cpu" or x.ndim != len(window) + 2:
    return nn.max_pool(x, window, strides=strides, padding=padding)
  pads = _pads(padding, x.shape[1:-1], window, strides, (1,) * len(window))
  return _max_pool(x, window, strides, tuple(tuple(p) for p in pads))


def _pool_geometry(shape, window, strides, pads):
  padded = [shape[1 + i] + pads[i][0] + pads[i][1] for i in range(len(window))]
  out = [(padded[i] - window[i]) // strides[i] + 1 for i in range(len(window))]
  return padded, out


def _pool_taps(xp, window, strides, out):
  """(tap index, the strided slice of the padded input that tap ``idx`` of every window reads)."""
  for idx in itertools.product(*(range(k) for k in window)):
    start = (0, *idx, 0)
    limit = (xp.shape[0], *(idx[i] + strides[i] * (out[i] - 1) + 1 for i in range(len(window))), xp.shape[-1])
    yield idx, lax.slice(xp, start, limit, (1, *strides, 1))


def _pad_neg_inf(x, pads):
  return jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
  return _max_pool_fwd(x, window, strides, pads)[0]


def _max_pool_fwd(x, window, strides, pads):
  xp = _pad_neg_inf(x, pads)
  _, out = _pool_geometry(x.shape, window, strides, pads)
  y = None
  for _, tap in _pool_taps(xp, window, strides, out):
    y = tap if y is None else jnp.maximum(y, tap)
  return y, (x, y)


def _max_pool_bwd(window, strides, pads, res, g):
  x, y = res
  xp = _pad_neg_inf(x, pads)
  padded, out = _pool_geometry(x.shape, window, strides, pads)
  taken = jnp.zeros(y.shape, bool)
  dxp = jnp.zeros(xp.shape, g.dtype)
  for idx, tap in _pool_taps(xp, window, strides, out):
    first = (tap == y) & ~taken
    taken = taken | first
    spread = [(0, 0, 0)] + [(idx[i], padded[i] - idx[i] - strides[i] * (out[i] - 1) - 1, strides[i] - 1)
                            for i in range(len(window))] + [(0, 0, 0)]
    dxp = dxp + lax.pad(jnp.where(first, g, jnp.zeros((), g.dtype)), jnp.zeros((), g.dtype), spread)
  inner = tuple(slice(p[0], p[0] + x.shape[1 + i]) for i, p in enumerate(pads))
  return (dxp[(slice(None), *inner, slice(None))],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


#: ``flax.linen.Conv`` with :func:`conv_general_dilated` (drop-in: same fields, parameters and names).
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
