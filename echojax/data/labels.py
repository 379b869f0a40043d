"""Class names of the datasets, in label-id order: the one copy that builders, phantom generators and experiment
configs import (this module imports nothing, so a config can read it without pulling in TFDS)."""

#: echo_views: the 11 standard views of the view-classification study
ECHO_VIEWS = ("A2C", "A3C", "A4C", "A5C", "PLAX", "PSAX", "SUBCOSTAL", "SUPRASTERNAL", "CW_DOPPLER", "PW_DOPPLER",
              "M_MODE")
#: unity: single- vs dual-screen exports (EchoSDNet)
UNITY_CLASSES = ("single", "dual")
#: ecg_images: PTB-XL's five diagnostic superclasses (normal ECG, myocardial infarction, ST/T change, conduction
#: disturbance, hypertrophy), the builder's default class list (a classes.txt in the raw folder replaces it)
ECG_SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
