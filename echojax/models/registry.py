"""Model registry: families register constructors by name; configs pick them with `model.name`."""

from __future__ import annotations

import difflib
from typing import Callable

import flax.linen as nn

from echojax.errors import UserError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
  """Decorator: ``@register("resnet50")`` on a function or class returning a flax Module."""

  def deco(fn):
    if name in _MODELS:
      raise ValueError(f"model {name!r} registered twice")
    _MODELS[name] = fn
    return fn

  return deco


def get_model(name: str, **kwargs) -> nn.Module:
  if name not in _MODELS:
    near = difflib.get_close_matches(name, _MODELS, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise UserError(f"unknown model {name!r} (config field model.name).{hint} Available: {', '.join(sorted(_MODELS))}")
  return _MODELS[name](**kwargs)


def list_models() -> list[str]:
  return sorted(_MODELS)
