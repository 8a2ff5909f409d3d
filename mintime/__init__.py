"""MINTIME: Multi-Identity size-iNvariant TimeSformer for video deepfake detection.

The package is the one implementation shared by training, export, the in-process predictor and the Triton
Python-backend models. Importing it is cheap: submodules import torch lazily where they need it, and
:mod:`mintime.contract`, :mod:`mintime.slots` and :mod:`mintime.explain` need only numpy.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
