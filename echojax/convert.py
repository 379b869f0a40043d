"""Explicit name maps and per-parameter transforms between echojax (flax) variables and echoforge (torch) state dicts.

A conversion is a list of :class:`Rule` s, one per tensor: ``(flax path, torch key, transform)``. The list for an
architecture is built by walking that architecture's known structure (``rules_for(arch, kwargs)``), not by guessing
from names, and every conversion checks that each flax leaf and each torch key is used exactly once and that shapes
agree, so a renamed or added layer fails loudly instead of being dropped.

Transforms (flax -> torch; the inverse is applied for torch -> flax):

* ``conv2d``: kernel HWIO -> OIHW, ``transpose(3, 2, 0, 1)``;
* ``conv3d``: kernel THWIO -> OITHW, ``transpose(4, 3, 0, 1, 2)``;
* ``dense``: kernel (in, out) -> weight (out, in), ``.T``;
* ``copy``: biases; BatchNorm ``params/scale`` -> ``weight``, ``params/bias`` -> ``bias``,
  ``batch_stats/mean`` -> ``running_mean``, ``batch_stats/var`` -> ``running_var``.

torch's ``num_batches_tracked`` buffers have no flax counterpart; they are written as 0 (``Rule`` with no flax path).
BatchNorm epsilons are NOT weights: both sides set them explicitly (echojax: 1e-5 torchvision / 1.001e-5 keras; the
echoforge modules use the same per-layout constants) and the parity tests check the outputs agree.

Flax paths start with the collection: ``("params", "stem_conv", "kernel")``, ``("batch_stats", "stem_bn", "mean")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from echojax.errors import UserError

TRANSFORMS = ("conv1d", "conv2d", "conv3d", "dense", "copy", "counter", "heads_in", "heads_out", "heads_bias")


@dataclass(frozen=True)
class Rule:
  """One tensor: flax path (None for torch-only buffers), torch state-dict key, transform name, and (for the
  attention reshapes, whose inverse needs it) the flax shape."""
  flax: tuple[str, ...] | None
  torch: str
  kind: str
  shape: tuple[int, ...] | None = None


def to_torch_array(x: np.ndarray, kind: str) -> np.ndarray:
  """Flax layout -> torch layout for one tensor."""
  if kind == "conv2d":
    return np.transpose(x, (3, 2, 0, 1))
  if kind == "conv3d":
    return np.transpose(x, (4, 3, 0, 1, 2))
  if kind == "dense":
    return np.transpose(x)
  if kind == "copy":
    return x
  if kind == "conv1d":  # (K, I, O) -> (O, I, K)
    return np.transpose(x, (2, 1, 0))
  if kind == "heads_in":  # attention q/k/v kernel (D, H, Dh) -> Linear weight (H*Dh, D)
    return np.transpose(x.reshape(x.shape[0], -1))
  if kind == "heads_out":  # attention out kernel (H, Dh, D) -> Linear weight (D, H*Dh)
    return np.transpose(x.reshape(-1, x.shape[-1]))
  if kind == "heads_bias":  # (H, Dh) -> (H*Dh,)
    return x.reshape(-1)
  raise ValueError(f"unknown transform {kind!r}")


def to_flax_array(x: np.ndarray, kind: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
  """Torch layout -> flax layout for one tensor (inverse of :func:`to_torch_array`; the attention reshapes need
  the flax ``shape``)."""
  if kind == "conv2d":
    return np.transpose(x, (2, 3, 1, 0))
  if kind == "conv3d":
    return np.transpose(x, (2, 3, 4, 1, 0))
  if kind == "dense":
    return np.transpose(x)
  if kind == "copy":
    return x
  if kind == "conv1d":
    return np.transpose(x, (2, 1, 0))
  if kind in ("heads_in", "heads_out"):
    return np.transpose(x).reshape(shape)
  if kind == "heads_bias":
    return x.reshape(shape)
  raise ValueError(f"unknown transform {kind!r}")


# ----------------------------------------------------------------------------------------------------------- rules
def conv(flax: tuple[str, ...], torch: str, *, nd: int = 2, bias: bool = False) -> list[Rule]:
  """A convolution: kernel (+ bias)."""
  rules = [Rule(("params", *flax, "kernel"), f"{torch}.weight", f"conv{nd}d")]
  if bias:
    rules.append(Rule(("params", *flax, "bias"), f"{torch}.bias", "copy"))
  return rules


def bn(flax: tuple[str, ...], torch: str) -> list[Rule]:
  """A BatchNorm: scale/bias (params), mean/var (batch_stats), plus torch's num_batches_tracked."""
  return [Rule(("params", *flax, "scale"), f"{torch}.weight", "copy"),
          Rule(("params", *flax, "bias"), f"{torch}.bias", "copy"),
          Rule(("batch_stats", *flax, "mean"), f"{torch}.running_mean", "copy"),
          Rule(("batch_stats", *flax, "var"), f"{torch}.running_var", "copy"),
          Rule(None, f"{torch}.num_batches_tracked", "counter")]


def dense(flax: tuple[str, ...], torch: str) -> list[Rule]:
  """A Dense / Linear layer: kernel.T + bias."""
  return [Rule(("params", *flax, "kernel"), f"{torch}.weight", "dense"),
          Rule(("params", *flax, "bias"), f"{torch}.bias", "copy")]


RESNET_STAGES = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                 101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
VIDEO_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def resnet_rules(depth: int = 50, num_classes: int | None = 1000, layout: str = "torchvision",
                 flax_prefix: tuple[str, ...] = (), torch_prefix: str = "", with_head: bool = True) -> list[Rule]:
  """2D ResNet (echojax.models.resnet naming) <-> torchvision naming (echoforge.models.resnet).

  ``stem_conv``/``stem_bn`` <-> ``conv1``/``bn1``; ``stage{i}_block{k}/conv{j}|bn{j}`` <-> ``layer{i}.{k}.conv{j}|bn{j}``;
  ``downsample_conv|bn`` <-> ``downsample.0|1``; ``head`` <-> ``fc``. The first block of every stage has a
  downsample branch except stage 1 of basic-block ResNets (same channels, stride 1), exactly as torchvision.
  """
  if depth not in RESNET_STAGES:
    raise UserError(f"no ResNet name map for depth={depth}; use one of {sorted(RESNET_STAGES)}")
  kind, counts = RESNET_STAGES[depth]
  bias = layout == "keras"
  p, t = flax_prefix, torch_prefix
  rules = conv((*p, "stem_conv"), f"{t}conv1", bias=bias) + bn((*p, "stem_bn"), f"{t}bn1")
  nconv = 2 if kind == "basic" else 3
  for i, n in enumerate(counts, start=1):
    for k in range(n):
      fb, tb = (*p, f"stage{i}_block{k}"), f"{t}layer{i}.{k}"
      for j in range(1, nconv + 1):
        rules += conv((*fb, f"conv{j}"), f"{tb}.conv{j}", bias=bias) + bn((*fb, f"bn{j}"), f"{tb}.bn{j}")
      if k == 0 and (i > 1 or kind == "bottleneck"):
        rules += conv((*fb, "downsample_conv"), f"{tb}.downsample.0", bias=bias)
        rules += bn((*fb, "downsample_bn"), f"{tb}.downsample.1")
  if with_head and num_classes:
    rules += dense((*p, "head"), f"{t}fc")
  return rules


def video_resnet_rules(kind: str = "r3d", depth: int = 18, num_classes: int | None = 400) -> list[Rule]:
  """R3D / R(2+1)D (echojax.models.video_resnet naming) <-> torchvision video naming (echoforge.models.video_resnet)."""
  if depth not in VIDEO_BLOCKS:
    raise UserError(f"no video ResNet name map for depth={depth}; use one of {sorted(VIDEO_BLOCKS)}")
  if kind == "r3d":
    rules = conv(("stem_conv",), "stem.0", nd=3) + bn(("stem_bn",), "stem.1")
  elif kind == "r2plus1d":
    rules = (conv(("stem_conv_spatial",), "stem.0", nd=3) + bn(("stem_bn_spatial",), "stem.1")
             + conv(("stem_conv_temporal",), "stem.3", nd=3) + bn(("stem_bn",), "stem.4"))
  else:
    raise UserError(f"no video ResNet name map for kind={kind!r}; use 'r3d' or 'r2plus1d'")
  for i, n in enumerate(VIDEO_BLOCKS[depth], start=1):
    for k in range(n):
      fb, tb = f"stage{i}_block{k}", f"layer{i}.{k}"
      for j in (1, 2):
        if kind == "r3d":
          rules += conv((fb, f"conv{j}"), f"{tb}.conv{j}.0", nd=3)
        else:
          rules += conv((fb, f"conv{j}_spatial"), f"{tb}.conv{j}.0.0", nd=3)
          rules += bn((fb, f"conv{j}_mid_bn"), f"{tb}.conv{j}.0.1")
          rules += conv((fb, f"conv{j}_temporal"), f"{tb}.conv{j}.0.3", nd=3)
        rules += bn((fb, f"bn{j}"), f"{tb}.conv{j}.1")
      if k == 0 and i > 1:
        rules += conv((fb, "downsample_conv"), f"{tb}.downsample.0", nd=3) + bn((fb, "downsample_bn"),
                                                                                 f"{tb}.downsample.1")
  if num_classes:
    rules += dense(("head",), "fc")
  return rules


def _kw(kwargs: Mapping[str, Any], key: str, default: Any) -> Any:
  return kwargs.get(key, default)


def mirror_rules(variables: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[Rule]:
  """Name map for families whose torch mirror uses the flax module names joined by "." (EfficientNet, ViT).

  Still one explicit rule per tensor, with the transform chosen by the layer type: BatchNorm (a module with
  ``batch_stats``) -> weight/bias/running_*; 2D/4D/5D kernels -> dense/conv2d/conv3d; 3D attention kernels ->
  q/k/v (``heads_in``) or ``out`` (``heads_out``) Linear weights; LayerNorm ``scale`` -> ``weight``; other params
  (class token, position embedding) copied under their own name; 3-D kernels outside ``attention`` are 1-D convs
  (``conv1d``). Subtrees whose top-level name is in ``skip`` are left out (mapped by other rules).
  """
  flat = {k: v for k, v in flatten(variables).items() if len(k) < 2 or k[1] not in skip}
  stats_modules = {k[1:-1] for k in flat if k[0] == "batch_stats"}
  rules: list[Rule] = []
  done_bn: set[tuple[str, ...]] = set()
  for path in sorted(k for k in flat if k[0] == "params"):
    mod, leaf = path[1:-1], path[-1]
    t = ".".join(mod)
    shape = tuple(np.shape(flat[path]))
    if mod in stats_modules:
      if mod not in done_bn:
        rules += bn(mod, t)
        done_bn.add(mod)
    elif leaf == "kernel":
      if len(shape) == 3 and "attention" in mod:
        kind = "heads_out" if mod[-1] == "out" else "heads_in"
      elif len(shape) == 3:
        kind = "conv1d"
      else:
        kind = {2: "dense", 4: "conv2d", 5: "conv3d"}.get(len(shape))
        if kind is None:
          raise UserError(f"no PyTorch transform for the {len(shape)}-D kernel {'/'.join(path)}")
      rules.append(Rule(path, f"{t}.weight", kind, shape))
    elif leaf == "bias":
      rules.append(Rule(path, f"{t}.bias", "heads_bias" if len(shape) == 2 else "copy", shape))
    elif leaf == "scale":
      rules.append(Rule(path, f"{t}.weight", "copy", shape))
    else:
      rules.append(Rule(path, f"{t}.{leaf}" if t else leaf, "copy", shape))
  return rules


MIRROR_FAMILIES = ("efficientnet", "vit", "video_vit", "conv3d")
TEMPORAL_KINDS = ("cnn_lstm", "tcn", "mhsa", "spatiotemporal")  # per-frame backbone under backbone/net


def rules_for(arch: str, kwargs: Mapping[str, Any] | None = None,
              variables: Mapping[str, Any] | None = None) -> list[Rule]:
  """The name map of architecture ``arch`` (an echojax.models registry name) built with ``kwargs``.

  EfficientNet, ViT and VideoViT maps are derived from the variables' structure (:func:`mirror_rules`), so pass
  ``variables`` (arrays or ShapeDtypeStructs) for them.
  """
  kw = dict(kwargs or {})
  if arch in MIRROR_FAMILIES or arch.startswith("efficientnet_") or arch in TEMPORAL_KINDS:
    if variables is None:
      raise ValueError(f"rules_for({arch!r}) needs the variables (their structure gives the name map)")
    bb = str(kw.get("backbone", "efficientnet_b2"))
    if arch in TEMPORAL_KINDS and bb.startswith("resnet"):  # torchvision-named backbone + mirrored rest
      bkw = dict(kw.get("backbone_kwargs") or {})
      depth = int(bb[6:]) if bb[6:].isdigit() else int(bkw.get("depth", 50))
      return (resnet_rules(depth, None, bkw.get("layout", "torchvision"), flax_prefix=("backbone", "net"),
                           torch_prefix="backbone.net.", with_head=False)
              + mirror_rules(variables, skip=("backbone",)))
    return mirror_rules(variables)
  if arch.startswith("resnet") and arch[6:].isdigit():
    return resnet_rules(int(arch[6:]), _kw(kw, "num_classes", 1000), _kw(kw, "layout", "torchvision"))
  if arch == "resnet":
    return resnet_rules(_kw(kw, "depth", 50), _kw(kw, "num_classes", 1000), _kw(kw, "layout", "torchvision"))
  if arch == "frame_resnet":
    rules = resnet_rules(_kw(kw, "depth", 18), None, _kw(kw, "layout", "torchvision"),
                         flax_prefix=("backbone",), torch_prefix="backbone.")
    return rules + (dense(("head",), "head") if _kw(kw, "num_classes", 0) else [])
  if arch in ("r3d_18", "r2plus1d_18"):
    return video_resnet_rules(arch.split("_")[0], 18, _kw(kw, "num_classes", 400))
  if arch == "video_resnet":
    return video_resnet_rules(_kw(kw, "kind", "r3d"), _kw(kw, "depth", 18), _kw(kw, "num_classes", 400))
  if arch == "echosdnet":
    return echosdnet_rules(kw)
  raise UserError(f"no PyTorch name map for architecture {arch!r} (echojax/convert.py); exportable: "
                  f"{', '.join(EXPORTABLE)}")


def echosdnet_rules(kw: Mapping[str, Any]) -> list[Rule]:
  """EchoSDNet: ResNet backbone under ``backbone`` + ``head_dense{j}`` hidden layers + ``head_out`` (same names in
  torch)."""
  rules = resnet_rules(_kw(kw, "depth", 50), None, _kw(kw, "layout", "keras"), flax_prefix=("backbone",),
                       torch_prefix="backbone.", with_head=False)
  for j in range(1, len(_kw(kw, "hidden", (128, 64))) + 1):
    rules += dense((f"head_dense{j}",), f"head_dense{j}")
  if _kw(kw, "num_classes", 2):
    rules += dense(("head_out",), "head_out")
  return rules


EXPORTABLE = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet", "frame_resnet", "r3d_18",
              "r2plus1d_18", "video_resnet", "echosdnet", "efficientnet",
              *(f"efficientnet_b{i}" for i in range(8)), "vit", "video_vit", "cnn_lstm", "tcn", "mhsa",
              "conv3d", "spatiotemporal")


# ------------------------------------------------------------------------------------------------------ conversion
def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  """Nested dicts (flax variables) -> {path tuple: leaf}."""
  out: dict[tuple[str, ...], Any] = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, (*prefix, str(k))))
    else:
      out[(*prefix, str(k))] = v
  return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    d = out
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = v
  return out


def _check_unique(rules: list[Rule]) -> None:
  seen_f, seen_t = set(), set()
  for r in rules:
    if r.torch in seen_t or (r.flax is not None and r.flax in seen_f):
      raise ValueError(f"name map uses {r.torch if r.torch in seen_t else '/'.join(r.flax)} twice")
    seen_t.add(r.torch)
    if r.flax is not None:
      seen_f.add(r.flax)


def flax_to_torch(variables: Mapping[str, Any], rules: list[Rule],
                  expected: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
  """Flax variables (``{"params": ..., "batch_stats": ...}``) -> torch state dict of numpy arrays.

  Every flax leaf must be mapped (an unmapped one raises, naming it); ``expected`` (torch key -> shape, e.g. from
  ``{k: tuple(v.shape) for k, v in module.state_dict().items()}``) checks keys and shapes on the torch side too.
  """
  _check_unique(rules)
  flat = {k: v for k, v in flatten(variables).items() if k[0] in ("params", "batch_stats")}
  used: set[tuple[str, ...]] = set()
  out: dict[str, np.ndarray] = {}
  missing = []
  for r in rules:
    if r.kind == "counter":
      out[r.torch] = np.zeros((), np.int64)
      continue
    if r.flax not in flat:
      missing.append("/".join(r.flax))
      continue
    used.add(r.flax)
    out[r.torch] = np.array(to_torch_array(np.asarray(flat[r.flax], np.float32), r.kind), order="C")  # 0-d stays 0-d
  unused = sorted("/".join(k) for k in flat if k not in used)
  if missing or unused:
    raise UserError("flax variables do not match the name map (echojax/convert.py): "
                    + (f"missing in the variables: {missing[:8]}{' ...' if len(missing) > 8 else ''}; " if missing else "")
                    + (f"not mapped to any torch key: {unused[:8]}{' ...' if len(unused) > 8 else ''}" if unused else "")
                    + ". Was the model built with the same architecture arguments?")
  if expected is not None:
    check_shapes(out, expected)
  return out


def check_shapes(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], source: str = "converted") -> None:
  """Keys and shapes of ``state`` equal ``expected``; raises UserError naming the first differences."""
  extra = sorted(set(state) - set(expected))
  absent = sorted(set(expected) - set(state))
  bad = [f"{k}: {tuple(np.shape(state[k]))} vs {tuple(expected[k])}" for k in state
         if k in expected and tuple(np.shape(state[k])) != tuple(expected[k])]
  if extra or absent or bad:
    raise UserError(f"{source} weights do not fit the torch module: "
                    + (f"unexpected keys {extra[:8]}; " if extra else "")
                    + (f"missing keys {absent[:8]}; " if absent else "")
                    + (f"shape mismatches {bad[:8]}" if bad else ""))


def torch_to_flax(state: Mapping[str, Any], rules: list[Rule], like: Mapping[str, Any] | None = None,
                  *, skip_missing: bool = False) -> dict[str, Any]:
  """Torch state dict (numpy arrays or tensors) -> flax variables ``{"params": ..., "batch_stats": ...}``.

  With ``like`` (flax variables of the target model) the result's paths and shapes are checked against it; with
  ``skip_missing`` rules whose torch key is absent are skipped (callers report them) instead of raising.
  """
  _check_unique(rules)
  flat: dict[tuple[str, ...], np.ndarray] = {}
  missing = []
  for r in rules:
    if r.kind == "counter":
      continue
    if r.torch not in state:
      missing.append(r.torch)
      continue
    v = state[r.torch]
    v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    flat[r.flax] = np.array(to_flax_array(v.astype(np.float32), r.kind, r.shape), order="C")
  if missing and not skip_missing:
    raise UserError(f"torch state dict lacks keys of the name map: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
  if like is not None:
    ref = {k: v for k, v in flatten(like).items() if k[0] in ("params", "batch_stats")}
    bad = [f"{'/'.join(k)}: {v.shape} vs {tuple(np.shape(ref[k]))}" for k, v in flat.items()
           if k in ref and tuple(v.shape) != tuple(np.shape(ref[k]))]
    unknown = sorted("/".join(k) for k in flat if k not in ref)
    if bad or unknown:
      raise UserError("converted weights do not fit the flax model: "
                      + (f"shape mismatches {bad[:8]}; " if bad else "") + (f"unknown paths {unknown[:8]}" if unknown else ""))
  return unflatten(flat)


# ---------------------------------------------------------------------------------------------------- test weights
def random_variables(abstract: Mapping[str, Any], seed: int = 0, *, input_scale: float = 1.0) -> dict[str, Any]:
  """Deterministic random flax variables (numpy, float32) with the structure of ``abstract`` (e.g. from
  ``jax.eval_shape(model.init, ...)``), for parity and golden-logit tests.

  Unlike a fresh init, BatchNorm is non-trivial (scale, bias, running mean and variance all random), so the BN
  conversion is really exercised; scales keep activations O(1) so an absolute tolerance is meaningful. Kernels are
  N(0, 1/fan_in); the first conv (sorted first ``stem*``) is divided by ``input_scale`` (e.g. 128 for inputs in
  caffe units). Values depend only on ``seed`` and the sorted paths (numpy PCG64), not on JAX's RNG.
  """
  flat = flatten(abstract)
  rng = np.random.default_rng(seed)
  out: dict[tuple[str, ...], np.ndarray] = {}
  first_conv = next((k for k in sorted(flat) if k[0] == "params" and k[-1] == "kernel" and len(flat[k].shape) >= 4),
                    None)
  for path in sorted(flat):
    shape = tuple(flat[path].shape)
    leaf = path[-1]
    if path[0] == "batch_stats":
      val = rng.normal(0.0, 0.1, shape) if leaf == "mean" else rng.uniform(0.5, 1.5, shape)
    elif leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      val = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
      if path == first_conv:
        val = val / input_scale
    elif leaf == "scale":
      val = rng.uniform(0.5, 1.0, shape)
    elif leaf == "bias":
      val = rng.normal(0.0, 0.1, shape)
    else:
      val = rng.normal(0.0, 0.02, shape)
    out[path] = np.asarray(val, np.float32)
  return unflatten(out)
