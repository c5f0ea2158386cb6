"""The stages shipped with mnistp4, installed as ``mnistp4.stages``: one sub-package per stage.

Each sub-package holds its plugins (modules with ``@mnistp4.hookimpl`` functions, listed in
:data:`SHIPPED`) and the helpers they use. A stage is replaced by a plugin that registers the same
names with ``override=True``; see ``docs/plugins.md``.
"""

#: The shipped plugins in load order: (plugin name, module). Listed explicitly, never found by a
#: file-name rule, so a helper module can never be mistaken for a plugin.
SHIPPED: tuple[tuple[str, str], ...] = tuple(
    (name, f"mnistp4.stages.{name}")
    for name in (
        "data.mnist_source",
        "data.semeion",
        "data.custom_digits",
        "data.normalizer",
        "sheets.shipped_layouts",
        "sheets.segment_template",
        "sheets.segment_freeform",
        "sheets.segment",
        "sheets.sheet_cli",
        "models.p4net",
        "models.p4net_plus",
        "models.seed_cnn",
        "models.evaluate",
        "training.weighting",
        "training.augment",
        "training.augment_extras",
        "training.recipes",
        "training.train",
        "training.update",
        "quantize.calib_images",
        "quantize.cost_report",
        "quantize.quantize",
        "quantize.qat_step",
        "deploy.deploy",
        "deploy.bundle",
        "deploy.crowpanel",
        "web.serve",
    )
)
