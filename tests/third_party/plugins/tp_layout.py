"""Sheet layout ``tp-strip``: four rows of six large boxes, marker code 47 (unused by the shipped layouts)."""

import mnistp4
from mnistp4 import Layout

MNISTP4_PLUGIN_API = "1.0"

STRIP = Layout("tp-strip", code=47, rows="0123", cols=6, grid_mm=(30.0, 40.0), box_mm=(25.0, 30.0), row_pitch_mm=36.0)


@mnistp4.hookimpl
def register_sheet_layouts(register):
    register(STRIP.name, STRIP, description="4 rows x 6 large boxes, marker code 47")
