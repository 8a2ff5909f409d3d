"""Research tooling: preprocessing, dataset split, training, evaluation and the synthetic forgery benchmark.

Submodules import torch lazily where they can; ``training.config`` and ``training.split`` need only the standard
library, numpy and PyYAML.
"""

__all__: list[str] = []
