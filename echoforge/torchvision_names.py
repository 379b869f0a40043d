"""torchvision's ResNet state-dict names <-> echojax / echoforge's. Pure Python: imports neither torch nor JAX.

The echoforge mirrors name every module by its flax module path, ResNets included (``stem_conv``,
``stage1_block0.conv1``, ``head``). torchvision's names are a fixed public convention, and they still appear at two
boundaries, which both use this one map:

* ImageNet init from a torchvision ``.pth`` / ``.safetensors`` file (``echojax.pretrained``, 2D ResNets);
* registry entries exported before manifest format 2 (``echoforge.registry``), whose ResNet mirrors (also as the
  backbone of EchoSDNet, FrameResNet and the temporal models, and R3D / R(2+1)D) had torchvision's attribute names.

Inside one ResNet (module names relative to its root)::

  echojax / echoforge            2D (resnet)           r3d                 r2plus1d
  stem_conv                      conv1                 stem.0
  stem_conv_spatial                                                        stem.0
  stem_bn_spatial                                                          stem.1
  stem_conv_temporal                                                       stem.3
  stem_bn                        bn1                   stem.1              stem.4
  stage{i}_block{k}.M            layer{i}.{k}.M'       (as 2D)             (as 2D)
    conv{j}                      conv{j}               conv{j}.0
    bn{j}                        bn{j}                 conv{j}.1           conv{j}.1
    conv{j}_spatial                                                        conv{j}.0.0
    conv{j}_mid_bn                                                         conv{j}.0.1
    conv{j}_temporal                                                       conv{j}.0.3
    downsample_conv              downsample.0          downsample.0        downsample.0
    downsample_bn                downsample.1          downsample.1        downsample.1
  head                           fc                    fc                  fc

Tensor names (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``) are the same on both
sides, and so are the tensors' layouts (both are torch state dicts).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

KINDS = ("2d", "r3d", "r2plus1d")

_TOP = {"2d": {"stem_conv": "conv1", "stem_bn": "bn1", "head": "fc"},
        "r3d": {"stem_conv": "stem.0", "stem_bn": "stem.1", "head": "fc"},
        "r2plus1d": {"stem_conv_spatial": "stem.0", "stem_bn_spatial": "stem.1", "stem_conv_temporal": "stem.3",
                     "stem_bn": "stem.4", "head": "fc"}}
_BLOCK = re.compile(r"^stage(\d+)_block(\d+)$")
_DOWNSAMPLE = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
_CONV_2D = re.compile(r"^(conv|bn)\d$")
_CONV_VIDEO = re.compile(r"^(conv|bn)(\d)(_spatial|_mid_bn|_temporal)?$")
_VIDEO_SUFFIX = {None: ".0", "_spatial": ".0.0", "_mid_bn": ".0.1", "_temporal": ".0.3"}


def module_name(name: str, kind: str = "2d") -> str:
  """torchvision's name of the module ``name`` (a "."-joined path relative to the root of a ResNet of ``kind``,
  e.g. ``"stage2_block0.downsample_bn"`` -> ``"layer2.0.downsample.1"``). ValueError for a name that is not a
  ResNet module of that kind."""
  if kind not in KINDS:
    raise ValueError(f"unknown ResNet kind {kind!r}; use one of {KINDS}")
  parts = name.split(".")
  if len(parts) == 1 and parts[0] in _TOP[kind]:
    return _TOP[kind][parts[0]]
  m = _BLOCK.match(parts[0])
  if m and len(parts) == 2:
    block, mod = f"layer{m[1]}.{m[2]}", parts[1]
    if mod in _DOWNSAMPLE:
      return f"{block}.{_DOWNSAMPLE[mod]}"
    if kind == "2d" and _CONV_2D.match(mod):
      return f"{block}.{mod}"
    v = _CONV_VIDEO.match(mod)
    if kind != "2d" and v and (v[3] is None or (v[1] == "conv" and kind == "r2plus1d")):
      return f"{block}.conv{v[2]}" + (".1" if v[1] == "bn" and v[3] is None else _VIDEO_SUFFIX[v[3]])
  raise ValueError(f"{name!r} is not a module of a {kind} ResNet (echoforge/torchvision_names.py)")


def key(name: str, kind: str = "2d") -> str:
  """torchvision's state-dict key of ``name`` (module path + "." + tensor, relative to a ResNet root)."""
  mod, _, leaf = name.rpartition(".")
  return f"{module_name(mod, kind)}.{leaf}"


def resnet_roots(shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
  """The ResNets among echoforge state-dict keys (key -> shape): their root prefix (``""``, ``"backbone."``,
  ``"backbone.net."``, ...) -> kind ("2d", "r3d" or "r2plus1d")."""
  roots: dict[str, str] = {}
  for k in shapes:
    for suffix in ("stem_conv_spatial.weight", "stem_conv.weight"):
      if k.endswith(suffix):
        prefix = k[:-len(suffix)]
        if (prefix == "" or prefix.endswith(".")) and any(s.startswith(f"{prefix}stage1_block0.") for s in shapes):
          spatial = suffix.startswith("stem_conv_spatial")
          roots[prefix] = "r2plus1d" if spatial else ("r3d" if len(shapes[k]) == 5 else "2d")
  return roots


def to_torchvision(shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
  """echoforge state-dict key -> the key torchvision names (and echoforge mirrors did, before manifest format 2),
  for every key of ``shapes`` (key -> shape, e.g. ``{k: v.shape for k, v in module.state_dict().items()}``): keys
  inside a ResNet are renamed, all others map to themselves."""
  roots = sorted(resnet_roots(shapes).items(), key=lambda r: -len(r[0]))  # innermost root first
  out = {}
  for k in shapes:
    root = next(((p, kind) for p, kind in roots if k.startswith(p)), None)
    out[k] = k if root is None else root[0] + key(k[len(root[0]):], root[1])
  return out


def from_torchvision(shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
  """The inverse of :func:`to_torchvision`: torchvision-named key -> echoforge key, for the keys of ``shapes``."""
  fwd = to_torchvision(shapes)
  inv = {t: k for k, t in fwd.items()}
  if len(inv) != len(fwd):
    raise ValueError("two echoforge keys have the same torchvision name")
  return inv
