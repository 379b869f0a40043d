"""LVAD cohort cines (motion-masked to EchoNet-like clips) with mortality. Importing registers the builder."""

from tfds_builders.lvad.lvad_dataset_builder import Lvad, LvadConfig, mask_cine, stored_clip  # noqa: F401
