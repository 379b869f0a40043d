"""Synthetic phantom generators. Each writes the REAL raw layout of a dataset, so builders read real and
synthetic data through the same code.

    python -m echojax.data.synthetic <dataset> --out DIR [--num N] [--seed S]

Each generator module has ``generate(out_dir, num, seed, **kwargs) -> Path`` and ``add_arguments(parser)``.
"""

from __future__ import annotations

import importlib

from echojax.data.datasets import DATASETS

# generator name on the command line -> its module: one per entry of the dataset table, nothing to register here
GENERATORS = {info.generator: f"echojax.data.synthetic.{info.generator}" for info in DATASETS.values()}


def get_generator(name: str):
  from echojax.errors import UserError

  if name not in GENERATORS:
    raise UserError(f"unknown synthetic dataset {name!r}; available: {', '.join(GENERATORS)}")
  return importlib.import_module(GENERATORS[name])
