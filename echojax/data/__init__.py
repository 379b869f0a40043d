"""Data path: phantom generators, raw-layout readers, grain pipelines, decoding and augmentation."""
