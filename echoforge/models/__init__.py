"""Torch modules mirroring the exportable echojax models, built by the same name and arguments as the JAX side.

``build(arch, **kwargs)`` takes an architecture name of the shared table :data:`echoforge.archs.ARCHS` (the
``echojax.models.get_model`` names: "resnet18" ... "resnet152", "resnet", "frame_resnet", "r3d_18", ...; see
``echoforge.architectures()``) and the JAX constructor arguments (``num_classes``, ``width``, ``layout``, ...).
The entry gives the torch class and the arguments fixed by the name. Arguments that only matter for JAX compute or
training (``dtype``, ``frozen_stages``, ...; :data:`IGNORED_KWARGS`) are accepted and ignored: the torch module is
always float32. Any other unknown argument is an error, so an architecture never silently differs. Torch-only
arguments (``image_size`` of ViT, ``image_size``/``num_frames`` of VideoViT: their position-embedding grids, fixed
when the JAX model was initialised) come from the manifest's ``architecture.torch_kwargs``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from echoforge import archs
from echoforge.models.echosdnet import EchoSDNet
from echoforge.models.efficientnet import EfficientNet
from echoforge.models.resnet import FrameResNet, ResNet
from echoforge.models.temporal import Conv3DNet, FrameTemporalModel, SpatioTemporalFusion
from echoforge.models.video_resnet import VideoResNet
from echoforge.models.vit import VideoViT, ViT

#: JAX-only constructor arguments with no effect on an inference-mode float32 torch module (compute dtype,
#: training-time freezing and initialisation).
IGNORED_KWARGS = frozenset({"dtype", "param_dtype", "frozen_stages", "zero_init_residual"})


def torch_class(arch: str) -> type[nn.Module]:
  """The echoforge class of architecture ``arch`` (KeyError for an unknown name)."""
  return archs.resolve(archs.get(arch).torch)


def build(arch: str, **kwargs: Any) -> nn.Module:
  """Builds the torch module for a JAX architecture name and its constructor arguments (float32, train mode)."""
  entry = archs.get(arch)
  cls = torch_class(arch)
  fixed = dict(entry.fixed)
  accepted = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
  kw = {k: v for k, v in kwargs.items() if k not in IGNORED_KWARGS}
  try:
    kw = archs.split_fixed(entry, kw)
  except ValueError as e:
    raise TypeError(str(e)) from None
  sig = inspect.signature(cls.__init__).parameters.values()
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig):  # options forwarded (and checked) further down
    accepted = [k for k in accepted if k not in ("kwargs", "encoder_kwargs")] + [k for k in kw if k not in fixed]
  unknown = sorted(k for k in kw if k not in accepted or k in fixed)
  if unknown:
    raise TypeError(f"architecture {arch!r} has no argument(s) {unknown}; it takes "
                    f"{sorted(k for k in accepted if k not in fixed)}")
  return cls(**fixed, **kw)


__all__ = ["EchoSDNet", "EfficientNet", "FrameResNet", "ResNet", "VideoResNet", "VideoViT", "ViT", "Conv3DNet",
           "FrameTemporalModel", "SpatioTemporalFusion", "build", "torch_class"]
