"""Model registry: every architecture of the shared table (``echoforge.archs.ARCHS``) by name, plus extra
registrations (``@register``, e.g. test-only models); configs pick them with ``model.name``.

A table entry's constructor is its ``jax`` target called with the arguments fixed by the name (``resnet50`` ->
``depth=50``) and the config's; a config may repeat a fixed argument but not change it.
"""

from __future__ import annotations

import difflib
from typing import Callable

import flax.linen as nn

from echoforge import archs
from echojax.errors import UserError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
  """Decorator: ``@register("my_model")`` on a function or class returning a flax Module (models outside the
  architecture table, which cannot be exported). Runs pass it the task's output size as ``num_classes``."""

  def deco(fn):
    if name in _MODELS:
      raise ValueError(f"model {name!r} registered twice")
    _MODELS[name] = fn
    return fn

  return deco


def _table_constructor(arch: archs.Arch) -> Callable[..., nn.Module]:
  def build(**kwargs) -> nn.Module:
    for k, v in arch.fixed.items():
      if k in kwargs and kwargs[k] != v:
        generic = [a.name for a in archs.ARCHS.values() if a.family == arch.family and not a.fixed]
        alt = f" or use model.name={generic[0]!r} with {k}={kwargs[k]!r}" if generic else ""
        raise UserError(f"model {arch.name!r} fixes {k}={v!r}; got {k}={kwargs[k]!r} (config field model.{k}); "
                        f"drop it{alt}")
    kw = archs.split_fixed(arch, kwargs)
    return archs.resolve(arch.jax)(**arch.fixed, **kw)

  build.__name__ = build.__qualname__ = arch.name
  build.__doc__ = f"{arch.name}: {arch.jax} with {dict(arch.fixed)} (echoforge.archs)."
  return build


for _arch in archs.ARCHS.values():
  register(_arch.name)(_table_constructor(_arch))


def get_model(name: str, **kwargs) -> nn.Module:
  if name not in _MODELS:
    near = difflib.get_close_matches(name, _MODELS, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise UserError(f"unknown model {name!r} (config field model.name).{hint} Available: {', '.join(sorted(_MODELS))}")
  return _MODELS[name](**kwargs)


def list_models() -> list[str]:
  return sorted(_MODELS)
