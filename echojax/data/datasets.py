"""Dataset table: the builder, phantom generator and defaults of each dataset echojax knows.

``ensure_synthetic`` (implemented with the EchoNet data path) generates + prepares a phantom set into the cache
when a config names no data_dir.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str  # TFDS builder name, e.g. "echonet_dynamic"
  builder_module: str  # importing it registers the builder
  generator: str  # key in echojax.data.synthetic.GENERATORS
  default_config: str | None  # TFDS builder config, e.g. "112"


DATASETS = {
    "echonet_dynamic": DatasetInfo("echonet_dynamic", "tfds_builders.echonet_dynamic", "echonet", "112"),
    "echo_views": DatasetInfo("echo_views", "tfds_builders.echo_views", "echo_views", None),
    "unity": DatasetInfo("unity", "tfds_builders.unity", "unity", None),
}
