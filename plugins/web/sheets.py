"""The collection page's view of the sheet layouts: the tablet template and its boxes in pixels.

Layouts are registered by the sheet plugins (``register_sheet_layouts``) and drawn by
``mnistp4.stages.sheets.layout.render_template`` — the same drawing ``mnistp4 sheet template`` writes
for a tablet — so a sheet drawn on this page is read by the ``template`` segmenter like any scan.
"""

from __future__ import annotations

from mnistp4.stages.web.collect import Box, SheetTemplate


def layout_names(app) -> list[str]:
    return app.registry.names("sheet_layouts")


def render_template_for(app, name: str) -> SheetTemplate:
    """The blank tablet sheet of layout ``name`` with its writing boxes in template pixels."""
    from mnistp4.stages.sheets.layout import TABLET_PX_PER_MM, render_template

    layout = app.get("sheet_layouts", name)
    image = render_template(layout, TABLET_PX_PER_MM)
    px = lambda v: int(round(v * TABLET_PX_PER_MM))  # noqa: E731 - the same rounding as the drawing
    boxes = []
    for r, digit in enumerate(layout.rows):
        for c in range(layout.cols):
            x, y, w, h = layout.box(r, c)
            boxes.append(
                Box(row=r, col=c, digit=int(digit), x=px(x), y=px(y), w=px(x + w) - px(x), h=px(y + h) - px(y))
            )
    entry = app.registry.entry("sheet_layouts", name)
    return SheetTemplate(layout=name, image=image, boxes=boxes, description=entry.description)
