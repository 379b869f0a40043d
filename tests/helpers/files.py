"""Small file helpers shared by the tests: CSV rows in and out, and the preamble of a subprocess script that must
run without JAX (echoforge's promise: torch + safetensors only)."""

from __future__ import annotations

import csv

#: put first in a ``python -c`` script: importing jax/flax/echojax/torchvision/orbax then fails
BLOCK_JAX_IMPORTS = '''
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("jax", "jaxlib", "flax", "echojax", "torchvision", "orbax"):
      raise ImportError("blocked in this test: " + name)
sys.meta_path.insert(0, Block())
'''


def read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def write_csv(path, rows, header):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
