"""Torch modules mirroring the exportable echojax models, built by the same name and arguments as the JAX side.

``build(arch, **kwargs)`` takes the JAX registry name (``echojax.models.get_model`` names: "resnet18" ...
"resnet152", "r3d_18", "r2plus1d_18", "echosdnet") and the JAX constructor arguments (``num_classes``, ``width``,
``layout``, ...). Arguments that only matter for JAX compute (``dtype``, ``param_dtype``) are accepted and ignored:
the torch module is always float32. Any other unknown argument is an error, so an architecture never silently differs.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from echoforge.models.echosdnet import EchoSDNet
from echoforge.models.resnet import ResNet
from echoforge.models.video_resnet import VideoResNet

#: JAX-only constructor arguments with no meaning for the float32 torch module.
IGNORED_KWARGS = frozenset({"dtype", "param_dtype", "compute_dtype"})


def _resnet(depth: int) -> Callable[..., nn.Module]:
  def make(**kw: Any) -> nn.Module:
    return ResNet(depth=depth, **kw)
  make.target = ResNet  # type: ignore[attr-defined]
  return make


def _video(kind: str) -> Callable[..., nn.Module]:
  def make(**kw: Any) -> nn.Module:
    return VideoResNet(kind=kind, **kw)
  make.target = VideoResNet  # type: ignore[attr-defined]
  return make


def _echosdnet(**kw: Any) -> nn.Module:
  return EchoSDNet(**kw)


_echosdnet.target = EchoSDNet  # type: ignore[attr-defined]

#: architecture name -> builder. Defaults equal the JAX model's defaults.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
  **{f"resnet{d}": _resnet(d) for d in (18, 34, 50, 101, 152)},
  "r3d_18": _video("r3d"),
  "r2plus1d_18": _video("r2plus1d"),
  "echosdnet": _echosdnet,
}


def build(arch: str, **kwargs: Any) -> nn.Module:
  """Builds the torch module for a JAX architecture name and its constructor arguments (float32, train mode)."""
  if arch not in ARCHITECTURES:
    raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
  fn = ARCHITECTURES[arch]
  params = inspect.signature(fn.target).parameters  # type: ignore[attr-defined]
  kw = {k: v for k, v in kwargs.items() if k not in IGNORED_KWARGS}
  unknown = sorted(k for k in kw if k not in params or k in ("depth", "kind"))
  if unknown:
    raise TypeError(f"architecture {arch!r} has no argument(s) {unknown}; it takes "
                    f"{sorted(k for k in params if k not in ('self', 'depth', 'kind'))}")
  return fn(**kw)


__all__ = ["ARCHITECTURES", "EchoSDNet", "ResNet", "VideoResNet", "build"]
