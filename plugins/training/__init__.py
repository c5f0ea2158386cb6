"""Training stage: the training loop, recipes, augmentations, weighting of custom digits, ``train``."""
