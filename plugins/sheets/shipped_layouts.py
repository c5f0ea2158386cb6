"""The shipped collection-sheet layouts (``grid-10x10``: rows 0-9 x 10 boxes; ``grid-10x5``;
``grid-10x10-letter``: the first on US Letter paper)."""

from __future__ import annotations

import mnistp4
from mnistp4.stages.sheets.layout import default_layouts, paper_name


@mnistp4.hookimpl
def register_sheet_layouts(register):
    for layout in default_layouts():
        register(
            layout.name,
            layout,
            description=f"{len(layout.rows)} rows ({layout.rows}) x {layout.cols} boxes, "
            f"{paper_name(layout)}, marker id {layout.code}",
        )
