"""UNITY echo frames, single- vs dual-screen view (EchoSDNet). Importing registers the builder."""

from tfds_builders.unity.unity_dataset_builder import Unity, stored_image  # noqa: F401
