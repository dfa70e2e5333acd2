"""anyppg-edge: the AnyPPG PPG foundation model from GPU pretraining to int8 smartwatch encoders.

Importing the package is light (numpy/scipy-free even); heavy dependencies (torch, tensorflow,
brevitas, onnxruntime, neurokit2) are imported by the sub-modules that need them.
"""

__version__ = "0.1.0"
