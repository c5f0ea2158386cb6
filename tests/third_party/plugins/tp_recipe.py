"""Recipe ``tp-one``: one epoch of Adam at batch 64."""

import mnistp4
from mnistp4 import Recipe

MNISTP4_PLUGIN_API = "1.0"


@mnistp4.hookimpl
def register_recipes(register):
    register(
        "tp-one",
        Recipe("tp-one", epochs=1, batch_size=64, optimizer="adam", lr=2e-3, description="one epoch, Adam, batch 64"),
    )
