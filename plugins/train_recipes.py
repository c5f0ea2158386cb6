"""Training recipes ``seed`` (the article's, exactly) and ``fast`` (the shipped default).

``seed``: Adam at a constant 1e-3, batch 64, 30 epochs, plain cross-entropy, and the article's
per-sample data pipeline (PIL rotation/shift of one digit at a time in a DataLoader).

``fast``: the same augmentation done on whole batches, batch 128, AdamW with a one-cycle schedule
(warm-up to 6e-3 over the first 20 % of steps, then cosine annealing far below 1e-3), label
smoothing 0.05, 8 epochs (about 5 minutes for p4net on 2 CPU cores). The large early learning rate reaches 99 % within the first epochs; the
annealed tail is what takes a small model past 99.5 %.
"""
from __future__ import annotations

from mnistp4 import hookimpl

from plugins._train_loop import Recipe

SEED = Recipe("seed", epochs=30, batch_size=64, optimizer="adam", lr=1e-3, schedule="constant",
              loader="per-sample", description="the article's: Adam 1e-3 constant, batch 64, per-sample transforms")
FAST = Recipe("fast", epochs=8, batch_size=128, optimizer="adamw", lr=6e-3, weight_decay=1e-2,
              schedule="onecycle", label_smoothing=0.05, loader="batch",
              description="AdamW one-cycle 6e-3, batch 128, label smoothing 0.05, batched augmentation")


@hookimpl
def register_recipes(register):
    register(SEED.name, SEED, description=SEED.description)
    register(FAST.name, FAST, description=FAST.description)
