"""Torch modules mirroring the exportable echojax models, built by the same name and arguments as the JAX side.

``build(arch, **kwargs)`` takes the JAX registry name (``echojax.models.get_model`` names: "resnet18" ...
"resnet152", "resnet", "frame_resnet", "r3d_18", "r2plus1d_18", "video_resnet", "echosdnet", "efficientnet[_bN]",
"vit", "video_vit", "cnn_lstm", "tcn", "mhsa", "conv3d", "spatiotemporal") and the JAX constructor
arguments (``num_classes``, ``width``, ``layout``, ...). Arguments that only matter for JAX compute or training
(``dtype``, ``frozen_stages``, ...; :data:`IGNORED_KWARGS`) are accepted and ignored: the torch module is always
float32. Any other unknown argument is an error, so an architecture never silently differs. Torch-only arguments
(``image_size`` of ViT, ``image_size``/``num_frames`` of VideoViT: their position-embedding grids, fixed when the JAX model was initialised) come from the
manifest's ``architecture.torch_kwargs``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from echoforge.models.echosdnet import EchoSDNet
from echoforge.models.efficientnet import EfficientNet
from echoforge.models.resnet import FrameResNet, ResNet
from echoforge.models.temporal import Conv3DNet, FrameTemporalModel, SpatioTemporalFusion
from echoforge.models.video_resnet import VideoResNet
from echoforge.models.vit import VideoViT, ViT

#: JAX-only constructor arguments with no effect on an inference-mode float32 torch module (compute dtype,
#: training-time freezing and initialisation).
IGNORED_KWARGS = frozenset({"dtype", "param_dtype", "frozen_stages", "zero_init_residual"})

#: architecture name (= echojax.models registry name) -> (torch class, arguments fixed by the name).
#: Defaults of every class equal the JAX model's defaults.
ARCHITECTURES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
  **{f"resnet{d}": (ResNet, {"depth": d}) for d in (18, 34, 50, 101, 152)},
  "resnet": (ResNet, {}),
  "frame_resnet": (FrameResNet, {}),
  "r3d_18": (VideoResNet, {"kind": "r3d", "depth": 18}),
  "r2plus1d_18": (VideoResNet, {"kind": "r2plus1d", "depth": 18}),
  "video_resnet": (VideoResNet, {}),
  "echosdnet": (EchoSDNet, {}),
  "efficientnet": (EfficientNet, {}),
  **{f"efficientnet_b{i}": (EfficientNet, {"variant": f"b{i}"}) for i in range(8)},
  "vit": (ViT, {}),
  "video_vit": (VideoViT, {}),
  **{k: (FrameTemporalModel, {"kind": k}) for k in ("cnn_lstm", "tcn", "mhsa")},
  "conv3d": (Conv3DNet, {}),
  "spatiotemporal": (SpatioTemporalFusion, {}),
}


def build(arch: str, **kwargs: Any) -> nn.Module:
  """Builds the torch module for a JAX architecture name and its constructor arguments (float32, train mode)."""
  if arch not in ARCHITECTURES:
    raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
  cls, fixed = ARCHITECTURES[arch]
  accepted = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
  kw = {k: v for k, v in kwargs.items() if k not in IGNORED_KWARGS}
  for k, v in fixed.items():
    if k in kw and kw.pop(k) != v:
      raise TypeError(f"architecture {arch!r} has {k}={v!r}; got {k}={kwargs[k]!r}")
  sig = inspect.signature(cls.__init__).parameters.values()
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig):  # options forwarded (and checked) further down
    accepted = [k for k in accepted if k not in ("kwargs", "encoder_kwargs")] + [k for k in kw if k not in fixed]
  unknown = sorted(k for k in kw if k not in accepted or k in fixed)
  if unknown:
    raise TypeError(f"architecture {arch!r} has no argument(s) {unknown}; it takes "
                    f"{sorted(k for k in accepted if k not in fixed)}")
  return cls(**fixed, **kw)


__all__ = ["ARCHITECTURES", "EchoSDNet", "EfficientNet", "FrameResNet", "ResNet", "VideoResNet", "VideoViT", "ViT", "Conv3DNet",
           "FrameTemporalModel", "SpatioTemporalFusion", "build"]
