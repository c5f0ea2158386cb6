"""Every extension point of mnistp4, declared and documented in one place.

A plugin is a module (or object) with functions decorated by ``@mnistp4.hookimpl`` whose names
match the specs below. There are three kinds of hooks:

* **Registry hooks** ``register_<kind>(register)`` add named choices (a model, a segmenter, a
  deploy target...). They are *collected*: every plugin's implementation is called once, in
  load order, with a ``register`` callable bound to that plugin::

      register(name, obj, *, override=False, description="")

  Registering a name that another plugin already registered is an error unless ``override=True``;
  with ``override=True`` the later plugin (see load order in :mod:`mnistp4.plugins`) replaces the
  earlier one. The registered objects are looked up by name with
  :meth:`mnistp4.registry.Registry.get` (``registry.get("models", "seed-cnn")``).

* **Event hooks** ``on_<event>(...)`` let a plugin observe without replacing anything. All
  implementations are called; return values are ignored. An exception inside one is reported
  with the plugin's name and the hook's name (:class:`mnistp4.errors.PluginError`).

* **Command hooks** let a plugin add CLI commands or pipeline steps.

The object each registry kind expects is described on its hook. Objects are plain Python
(functions, dataclasses from :mod:`mnistp4.records`); the core never inspects more than it says.
"""
from __future__ import annotations

import pluggy

PROJECT = "mnistp4"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------
# Registry hooks (collected; every implementation is called with a plugin-bound ``register``)
# --------------------------------------------------------------------------------------------

@hookspec
def register_sheet_layouts(register):
    """Register collection-sheet layouts (the grid a writer fills in).

    ``register(name, layout)``: ``layout`` describes the rows (the digit of each row), the
    columns and the page geometry (``mnistp4.stages.sheets.layout.Layout`` for the shipped ones). Its
    numeric code is encoded in the corner ArUco markers so a scan can be matched to it.
    """


@hookspec
def register_segmenters(register):
    """Register sheet segmenters: image of a sheet -> labelled digit crops.

    ``register(name, segmenter)``: ``segmenter(image, *, layout=None, options=None) ->
    list[records.Digit]`` where ``image`` is a decoded greyscale ``numpy.uint8`` array and
    ``options`` a dict of segmenter settings. It raises :class:`mnistp4.errors.InputError` for a
    sheet it cannot read (the batch goes on).
    """


@hookspec
def register_normalizers(register):
    """Register digit normalizers: any ink image -> MNIST-style 28x28.

    ``register(name, normalize)``: ``normalize(image) -> numpy.uint8 (28, 28)`` white ink on black,
    centre of mass at the centre. Exactly one normalizer is *the* project normalizer
    (config key ``normalizer``); training data, sheets and the firmware's C port follow it.
    """


@hookspec
def register_dataset_sources(register):
    """Register dataset sources by name (``mnist``, ``semeion``, a manifest folder...).

    ``register(name, source)``: ``source(config, split) -> records.DigitSet`` where ``split`` is
    ``"train"`` or ``"test"`` (or a source-specific split name).
    """


@hookspec
def register_weightings(register):
    """Register weighting strategies that mix MNIST with custom digits for an epoch.

    ``register(name, weighting)``: ``weighting(n_mnist, n_custom, factor, generator) ->
    (indices, composition)``; ``indices`` (a 1-D int tensor, in training order) index the
    concatenation [MNIST..., custom...], ``composition`` is a dict with ``mnist``, ``custom``,
    ``total`` and ``custom_share`` for the epoch.
    """


@hookspec
def register_augmentations(register):
    """Register batch augmentations.

    ``register(name, augmentation)``: ``augmentation(images, generator) -> images`` on a float
    tensor batch ``(N, 1, 28, 28)``; labels are never changed.
    """


@hookspec
def register_models(register):
    """Register model architectures.

    ``register(name, spec)``: ``spec`` is a :class:`mnistp4.records.ModelSpec` whose ``build()``
    returns a fresh ``torch.nn.Module`` taking ``(N, 1, 28, 28)`` and returning ``(N, 10)`` logits.
    Its optional ``recipe`` and ``augment`` name the recipe and augmentations the architecture
    trains best with; they replace the shipped defaults, never a value the user set.
    """


@hookspec
def register_recipes(register):
    """Register training recipes (optimizer, schedule, batch size, epochs...).

    ``register(name, recipe)``: a ``mnistp4.stages.training.loop.Recipe`` (epochs, batch size, optimizer,
    learning rate and schedule, label smoothing, data pipeline).
    """


@hookspec
def register_model_formats(register):
    """Register model file formats that ``mnistp4 evaluate`` can score.

    ``register(suffix, loader)``: ``suffix`` like ``".onnx"``; ``loader(path) -> predict`` where
    ``predict(images_uint8 (N, 28, 28)) -> logits numpy (N, 10)``.
    """


@hookspec
def register_quantizers(register):
    """Register quantization backends (``espdl`` over esp-ppq...).

    ``register(name, quantizer)``: ``quantizer(onnx_path, out_path, *, bits, target,
    calib_images, recipe) -> result`` writes ``out_path`` from a *copy* of the ONNX file
    (``calib_images``: uint8 (N, 28, 28)); the result has at least ``path``, ``bits``, ``target``
    and the per-layer error (``mnistp4.stages.quantize.espdl_quantize.QuantResult`` for ``espdl``).
    """


@hookspec
def register_deploy_targets(register):
    """Register deploy targets (``crowpanel-p4``, ``bundle``...).

    ``register(name, target)``: ``target(model_path, options) -> records.DeployResult``.
    """


@hookspec
def register_config_keys(register):
    """Declare extra configuration keys a plugin reads from ``[tool.mnistp4]``.

    ``register(key, default, help)``: the type of ``default`` is the key's type. Keys that nobody
    declared are rejected when the configuration is loaded.
    """


# --------------------------------------------------------------------------------------------
# Command hooks
# --------------------------------------------------------------------------------------------

@hookspec
def register_commands(cli):
    """Add commands to the ``mnistp4`` click group ``cli``.

    Stage plugins provide ``sheet``, ``segment``, ``train``, ``evaluate``, ``quantize``,
    ``deploy``... this way. The core adds a placeholder that says "no plugin provides it yet" for
    every stage command that no plugin added. Inside a command, ``mnistp4.cli.get_app()`` returns
    the :class:`mnistp4.app.App` (config, registry, console, hooks).
    """


@hookspec
def register_pipeline_steps(register):
    """Add steps to ``mnistp4 run``, the whole pipeline on the configured defaults.

    ``register(name, step)``: ``step`` is a :class:`mnistp4.records.PipelineStep` with an
    ``order`` (steps run in ascending order; segment=10, train=20, quantize=30, deploy=40) and a
    ``run(app, state) -> dict`` function. ``state`` is a dict shared by the steps: a step reads
    what earlier steps stored (``state["data_dir"]``, ``state["run_dir"]``, ``state["model_file"]``)
    and returns what it adds; the returned dict is merged into ``state`` and shown in the summary.
    """


# --------------------------------------------------------------------------------------------
# Event hooks (all implementations called; results ignored)
# --------------------------------------------------------------------------------------------

@hookspec
def on_epoch_end(run_dir, epoch, metrics):
    """Called after each training epoch with the run directory, the 1-based epoch number and a
    dict of metrics (``train_loss``, ``test_loss``, ``test_accuracy``...)."""


@hookspec
def on_artifact_written(path, kind):
    """Called after an artifact is written atomically: ``kind`` is a short word such as
    ``"manifest"``, ``"model.pt"``, ``"onnx"``, ``"espdl"``, ``"bundle"``, ``"figure"``."""


@hookspec
def on_sheet_processed(sheet_path, digits, error):
    """Called after each sheet of a ``segment`` batch: ``digits`` is the list of
    :class:`mnistp4.records.Digit` (empty on failure) and ``error`` the message or ``None``."""


@hookspec
def on_step_end(name, result):
    """Called after each step of ``mnistp4 run`` with the step's name and returned dict."""
