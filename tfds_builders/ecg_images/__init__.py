"""Photographed or scanned 12-lead ECG printouts -> diagnostic class. Importing registers the builder."""

from tfds_builders.ecg_images.ecg_images_dataset_builder import EcgImages, stored_image  # noqa: F401
