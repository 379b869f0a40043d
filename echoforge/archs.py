"""The one architecture table shared by echojax (JAX) and echoforge (PyTorch). Imports neither torch nor JAX.

Every exportable architecture is one :class:`Arch` entry of :data:`ARCHS`: its name (the ``model.name`` of a config,
``echojax.models.get_model(name)``, ``echoforge.load_model(name, pretrained=False)``), its family, whether it takes
videos, the constructor arguments fixed by the name (``resnet50`` -> ``depth=50``), the JAX constructor and the torch
mirror class (``"module:attribute"`` strings, resolved lazily by each side), the torch-only constructor arguments
that the export derives from the input (ViT position-embedding grids) and a default input size.

The hyperparameter tables of the families (ResNet stages per depth, video-ResNet blocks, EfficientNet scaling,
ViT sizes, X3D stages) live here too, so both sides build the same network from the same numbers.

Who reads it: ``echojax.models.registry`` (one constructor per entry), ``echoforge.models.build`` (the torch mirror
per entry), ``echojax.convert`` / ``echojax.export`` (name check, video or image input, torch-only arguments), the
parity tests (one golden case per entry).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# ---------------------------------------------------------------------------------------------- hyperparameters
#: ResNet depth -> (block kind, blocks per stage), as torchvision.
RESNET_STAGES: Mapping[int, tuple[str, tuple[int, int, int, int]]] = MappingProxyType({
  18: ("basic", (2, 2, 2, 2)),
  34: ("basic", (3, 4, 6, 3)),
  50: ("bottleneck", (3, 4, 6, 3)),
  101: ("bottleneck", (3, 4, 23, 3)),
  152: ("bottleneck", (3, 8, 36, 3)),
})

#: ResNet BatchNorm epsilon per layout (torchvision; keras.applications), also R3D / R(2+1)D's (torchvision).
RESNET_BN_EPS: Mapping[str, float] = MappingProxyType({"torchvision": 1e-5, "keras": 1.001e-5})

#: video ResNet (R3D / R(2+1)D) depth -> basic blocks per stage, as torchvision.models.video.
VIDEO_RESNET_BLOCKS: Mapping[int, tuple[int, int, int, int]] = MappingProxyType({18: (2, 2, 2, 2), 34: (3, 4, 6, 3)})
VIDEO_RESNET_KINDS = ("r3d", "r2plus1d")

#: EfficientNet variant -> (width_mult, depth_mult, dropout, bn_eps, torch bn momentum), as torchvision.
EFFICIENTNET_VARIANTS: Mapping[str, tuple[float, float, float, float, float]] = MappingProxyType({
  "b0": (1.0, 1.0, 0.2, 1e-5, 0.1),
  "b1": (1.0, 1.1, 0.2, 1e-5, 0.1),
  "b2": (1.1, 1.2, 0.3, 1e-5, 0.1),
  "b3": (1.2, 1.4, 0.3, 1e-5, 0.1),
  "b4": (1.4, 1.8, 0.4, 1e-5, 0.1),
  "b5": (1.6, 2.2, 0.4, 1e-3, 0.01),
  "b6": (1.8, 2.6, 0.5, 1e-3, 0.01),
  "b7": (2.0, 3.1, 0.5, 1e-3, 0.01),
})

#: EfficientNet B0 stages: (expand_ratio, kernel, stride, in_channels, out_channels, num_layers); Table 1 of the paper.
EFFICIENTNET_BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
  (1, 3, 1, 32, 16, 1),
  (6, 3, 2, 16, 24, 2),
  (6, 5, 2, 24, 40, 2),
  (6, 3, 2, 40, 80, 3),
  (6, 5, 1, 80, 112, 3),
  (6, 5, 2, 112, 192, 4),
  (6, 3, 1, 192, 320, 1),
)

#: transformer size -> (width, depth, mlp_dim, num_heads); Table 2 of arXiv:2106.04560 plus a tiny "mu" for tests.
VIT_SIZES: Mapping[str, tuple[int, int, int, int]] = MappingProxyType({
  "mu": (32, 1, 128, 2),
  "Ti": (192, 12, 768, 3),
  "S": (384, 12, 1536, 6),
  "M": (512, 12, 2048, 8),
  "B": (768, 12, 3072, 12),
  "L": (1024, 24, 4096, 16),
  "H": (1280, 32, 5120, 16),
})

#: LayerNorm epsilon of the transformer blocks (ViT, VideoViT, temporal encoders).
VIT_LN_EPS = 1e-6

#: X3D (Feichtenhofer 2020) bottlenecks per stage res2..res5 of the X3D-XS/S/M network (they differ only in the
#: input clip); stage i has ``width * 2**(i-1)`` output channels (width 24) and ``expansion`` (2.25) x as many inside.
X3D_BLOCKS: tuple[int, int, int, int] = (3, 5, 11, 7)


# ------------------------------------------------------------------------------------------------------- entries
@dataclass(frozen=True)
class Arch:
  """One exportable architecture.

  Attributes:
    name: registry name (``model.name``).
    family: the model family (one JAX module, one torch mirror).
    video: input is a clip (JAX (B, T, H, W, C), torch (N, C, T, H, W)); else an image.
    jax: ``"module:attribute"`` of the JAX constructor, called with ``**fixed, **kwargs``.
    torch: ``"module:attribute"`` of the echoforge torch class, called with the same arguments.
    fixed: constructor arguments fixed by the name (a config may repeat them, not change them).
    torch_input_kwargs: torch-only constructor arguments the export derives from the input size
      ("image_size", "num_frames": position-embedding grids fixed when the JAX model was initialised).
    default_size: input frame size recorded when the run's config does not say (default 112 video, 224 image).
  """
  name: str
  family: str
  video: bool
  jax: str
  torch: str
  fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
  torch_input_kwargs: tuple[str, ...] = ()
  default_size: int | None = None

  @property
  def input_size(self) -> int:
    return self.default_size or (112 if self.video else 224)


def _entries():
  for d in RESNET_STAGES:
    yield Arch(f"resnet{d}", "resnet", False, "echojax.models.resnet:ResNet", "echoforge.models.resnet:ResNet",
               MappingProxyType({"depth": d}))
  yield Arch("resnet", "resnet", False, "echojax.models.resnet:ResNet", "echoforge.models.resnet:ResNet")
  yield Arch("frame_resnet", "frame_resnet", True, "echojax.models.resnet:FrameResNet",
             "echoforge.models.resnet:FrameResNet")
  for kind in VIDEO_RESNET_KINDS:
    yield Arch(f"{kind}_18", "video_resnet", True, "echojax.models.video_resnet:VideoResNet",
               "echoforge.models.video_resnet:VideoResNet", MappingProxyType({"kind": kind, "depth": 18}))
  yield Arch("video_resnet", "video_resnet", True, "echojax.models.video_resnet:VideoResNet",
             "echoforge.models.video_resnet:VideoResNet")
  yield Arch("echosdnet", "echosdnet", False, "echojax.models.echosdnet:EchoSDNet",
             "echoforge.models.echosdnet:EchoSDNet", default_size=224)
  # ECG-image classifier (seed 003): a ResNet backbone (any depth) + switchable ECG modules; ecg_resnet50 is the recipe's
  yield Arch("ecg_resnet50", "ecg_resnet", False, "echojax.models.ecg_resnet:EcgResNet",
             "echoforge.models.ecg_resnet:EcgResNet", MappingProxyType({"depth": 50}), default_size=224)
  yield Arch("ecg_resnet", "ecg_resnet", False, "echojax.models.ecg_resnet:EcgResNet",
             "echoforge.models.ecg_resnet:EcgResNet", default_size=224)
  yield Arch("efficientnet", "efficientnet", False, "echojax.models.efficientnet:EfficientNet",
             "echoforge.models.efficientnet:EfficientNet")
  for v in EFFICIENTNET_VARIANTS:
    yield Arch(f"efficientnet_{v}", "efficientnet", False, "echojax.models.efficientnet:EfficientNet",
               "echoforge.models.efficientnet:EfficientNet", MappingProxyType({"variant": v}))
  yield Arch("vit", "vit", False, "echojax.models.vit:vit", "echoforge.models.vit:ViT",
             torch_input_kwargs=("image_size",))
  yield Arch("video_vit", "video_vit", True, "echojax.models.video_vit:video_vit", "echoforge.models.vit:VideoViT",
             torch_input_kwargs=("image_size", "num_frames"))
  for kind in ("cnn_lstm", "tcn", "mhsa"):
    yield Arch(kind, "temporal", True, "echojax.models.temporal:frame_temporal_model",
               "echoforge.models.temporal:FrameTemporalModel", MappingProxyType({"kind": kind}))
  yield Arch("conv3d", "conv3d", True, "echojax.models.temporal:conv3d", "echoforge.models.temporal:Conv3DNet")
  yield Arch("spatiotemporal", "spatiotemporal", True, "echojax.models.spatiotemporal:spatiotemporal",
             "echoforge.models.temporal:SpatioTemporalFusion")
  yield Arch("x3d", "x3d", True, "echojax.models.x3d:x3d", "echoforge.models.x3d:X3D")
  # an MLP head on feature vectors; exported with its image backbone (``backbone=``), so its input is an image
  yield Arch("feature_mlp", "mlp", False, "echojax.models.mlp:feature_mlp", "echoforge.models.mlp:FeatureMLP")


#: name -> entry, every exportable architecture (the one list of names).
ARCHS: Mapping[str, Arch] = MappingProxyType({a.name: a for a in _entries()})
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(a.family for a in ARCHS.values()))


def names() -> tuple[str, ...]:
  """Every architecture name, in table order."""
  return tuple(ARCHS)


def get(name: str) -> Arch:
  """The entry of ``name``; KeyError listing the known names otherwise."""
  try:
    return ARCHS[name]
  except KeyError:
    raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}") from None


def resolve(target: str) -> Any:
  """``"package.module:attribute"`` -> the attribute (imports the module)."""
  module, _, attr = target.partition(":")
  return getattr(importlib.import_module(module), attr)


def split_fixed(arch: Arch, kwargs: Mapping[str, Any]) -> dict[str, Any]:
  """``kwargs`` without the arguments the name fixes; ValueError when one of them differs from the fixed value."""
  kw = dict(kwargs)
  for k, v in arch.fixed.items():
    if k in kw and kw.pop(k) != v:
      raise ValueError(f"architecture {arch.name!r} has {k}={v!r}; got {k}={kwargs[k]!r} (drop it, or use the "
                       f"family's generic name)")
  return kw
