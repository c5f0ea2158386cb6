"""Training recipes ``seed`` (the article's, exactly) and ``fast`` (the shipped default).

``seed``: Adam at a constant 1e-3, batch 64, 30 epochs, plain cross-entropy, and the article's
per-sample data pipeline (PIL rotation/shift of one digit at a time in a DataLoader).

``fast``: the same augmentation done on whole batches, batch 128, AdamW with a one-cycle schedule
(warm-up to 4e-3 over the first 10 % of steps, then cosine annealing far below 1e-3), label
smoothing 0.05, 12 epochs, and an exponential moving average of the weights (decay 0.998) as the
model that is evaluated, kept and exported. The average is what makes the short warm-up pay off:
the raw weights at the peak learning rate are noisy (98.3-99.3 %), their average over the last
~500 steps is already above 99.4 % after two epochs, and the annealed tail takes it past 99.6 %.

``compact``: ``fast`` with the longer warm-up (20 %) to a higher peak (6e-3) and 12 epochs, for the
small ``p4net``: with ``fast``'s short warm-up it settles about 0.07 pp lower (99.48 % vs 99.55 %,
bench/results/train_recipes_p4net.txt).

``sam``: ``fast`` with sharpness-aware minimisation (each step's gradient taken at the worst weights
within radius 0.05) and 12 epochs, for the article's CNN, whose dense layer over positions overfits
(docs/history.md).

``sam-m32``: ``sam`` with each 32-digit quarter of the batch perturbed on its own ("m-sharpness"):
the same compute, and the article's CNN's three seeds land closer together (docs/history.md).
"""

from __future__ import annotations

from dataclasses import replace

from mnistp4 import hookimpl
from mnistp4.stages.training.loop import Recipe

SEED = Recipe(
    "seed",
    epochs=30,
    batch_size=64,
    optimizer="adam",
    lr=1e-3,
    schedule="constant",
    loader="per-sample",
    description="the article's: Adam 1e-3 constant, batch 64, per-sample transforms",
)
FAST = Recipe(
    "fast",
    epochs=12,
    batch_size=128,
    optimizer="adamw",
    lr=4e-3,
    weight_decay=1e-2,
    schedule="onecycle",
    warmup=0.1,
    label_smoothing=0.05,
    loader="batch",
    ema=0.998,
    description="AdamW one-cycle 4e-3 (10 % warm-up), batch 128, label smoothing 0.05, "
    "weight average 0.998, batched augmentation, 12 epochs",
)

COMPACT = replace(
    FAST,
    name="compact",
    epochs=12,
    lr=6e-3,
    warmup=0.2,
    description="fast with a 20 % warm-up to 6e-3 and 12 epochs: for the small p4net",
)

SAM = replace(
    FAST,
    name="sam",
    epochs=12,
    sam=0.05,
    description="fast with sharpness-aware minimisation (radius 0.05) and 12 epochs: twice the compute per step",
)

SAM_M32 = replace(
    SAM,
    name="sam-m32",
    sam_group=32,
    description="sam with each 32-digit sub-batch perturbed on its own (m-sharpness), 12 epochs: "
    "what seed-cnn trains with",
)


@hookimpl
def register_recipes(register):
    register(SEED.name, SEED, description=SEED.description)
    register(FAST.name, FAST, description=FAST.description)
    register(COMPACT.name, COMPACT, description=COMPACT.description)
    register(SAM.name, SAM, description=SAM.description)
    register(SAM_M32.name, SAM_M32, description=SAM_M32.description)
