"""EchoNet-Dynamic (apical 4-chamber videos, EF/ESV/EDV, ED/ES tracings). Importing registers the builder."""

from tfds_builders.echonet_dynamic.echonet_dynamic_dataset_builder import EchonetDynamic  # noqa: F401
