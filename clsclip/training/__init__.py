"""Training ClsCLIP on PASCAL-5i / COCO-20i folds (``pip install "clsclip[train]"``).

Inference never imports this package.
"""

from clsclip.training.config import TrainConfig
from clsclip.training.loop import masked_bce, train

__all__ = ["TrainConfig", "masked_bce", "train"]
