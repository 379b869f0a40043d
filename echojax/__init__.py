"""echojax: JAX/Flax deep learning on echocardiography and ECG."""

__version__ = "0.1.0"
