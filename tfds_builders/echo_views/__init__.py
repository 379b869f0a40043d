"""Echo view classification (11 views): still frames and cines with synchronised ECG. Importing registers the builder."""

from tfds_builders.echo_views.echo_views_dataset_builder import CLASSES, EchoViews, EchoViewsConfig  # noqa: F401
