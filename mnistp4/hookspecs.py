"""Every extension point of mnistp4, declared and documented in one place.

A plugin is a module (or object) with functions decorated by ``@mnistp4.hookimpl`` whose names
match the specs below. There are three kinds of hooks:

* **Registry hooks** ``register_<kind>(register)`` add named choices (a model, a segmenter, a
  deploy target...). They are *collected*: every plugin's implementation is called once, in
  load order, with a ``register`` callable bound to that plugin::

      register(name, obj, *, override=False, description="")

  Registering a name that another plugin already registered is an error unless ``override=True``;
  with ``override=True`` the later plugin (see load order in :mod:`mnistp4.plugins`) replaces the
  earlier one, and ``ctx.registry.replaced(kind, name)`` hands the override the object it replaced.
  Objects are validated when registered (a layout must be a :class:`mnistp4.api.Layout` with a
  marker code no other layout uses, a model a :class:`mnistp4.api.ModelSpec`...), and a failure
  inside a registered callable is reported with the plugin that registered it. Stages look objects
  up with ``ctx.get(kind, name)`` or by the config key that names them (``ctx.get("models",
  key="model")``); a config key naming nothing registered is a usage error when plugins load.

* **Event hooks** ``on_<event>(...)`` let a plugin observe without replacing anything. All
  implementations are called; return values are ignored. An exception inside one is reported
  with the plugin's name and the hook's name (:class:`mnistp4.api.PluginError`).

* **Command hooks** let a plugin add CLI commands or pipeline steps.

Calling convention (plugin API 1.x, :data:`mnistp4.api.PLUGIN_API_VERSION`): callables that *act*
- dataset sources, quantizers, deploy targets, pipeline steps - receive the context
(:data:`mnistp4.api.Context`: ``config``, ``registry``, ``console``, ``progress()``, ``emit()``) as
their first argument; commands get it with ``@mnistp4.pass_context``. Pure transforms - normalizers,
augmentations, weightings, segmenters (they run in worker processes), model builders and model
format loaders - get only their data; code handed no context (event hooks) may ask for the running
command's with :func:`mnistp4.api.current_context`. Every type named below is importable from
:mod:`mnistp4.api`.
A worked example of each hook: ``docs/plugins.md``.
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

    ``register(name, layout)``: a :class:`mnistp4.api.Layout` - the rows (the digit of each row),
    the columns and the page geometry in millimetres. Its ``code`` (0..61) is printed in the four
    corner ArUco markers so a scan is matched to it; two layouts may not share a code.
    """


@hookspec
def register_segmenters(register):
    """Register sheet segmenters: image of a sheet -> labelled digit crops.

    ``register(name, segmenter)``: ``segmenter(image, *, layout=None, options) ->
    list[mnistp4.api.Digit]`` where ``image`` is a decoded greyscale ``numpy.uint8`` array,
    ``layout`` the configured :class:`~mnistp4.api.Layout` (or None) and ``options`` a
    :class:`mnistp4.api.SegmentOptions` (every layout, the project normalizer, the rows of a
    freeform sheet). Segmenters run in worker processes: register a module-level function. It
    raises :class:`mnistp4.api.InputError` for a sheet it cannot read (the batch goes on, the sheet
    failed), :class:`mnistp4.api.NothingToCut` for a page that holds no sheet and may well be in the
    folder, such as the back of a sheet scanned on both sides (a note, no digits, no failure). The
    image it gets has a document scanner's dust lines already taken out.
    """


@hookspec
def register_normalizers(register):
    """Register digit normalizers: any ink image -> MNIST-style 28x28.

    ``register(name, normalize)``: ``normalize(image) -> numpy.uint8 (28, 28)`` white ink on black,
    centre of mass at the centre, for a greyscale image of one digit in either polarity. Exactly
    one normalizer is *the* project normalizer (config key ``normalizer``,
    :func:`mnistp4.api.project_normalizer`); training data, sheets and the firmware's C port follow
    it. A module-level function: it runs in worker processes.
    """


@hookspec
def register_dataset_sources(register):
    """Register dataset sources by name (``mnist``, ``semeion``, a manifest folder...).

    ``register(name, source)``: ``source(ctx, split) -> mnistp4.api.DigitSet`` where ``split`` is
    ``"train"`` or ``"test"`` (or a source-specific split name such as ``"all"``). Custom digits
    carry their writer in ``sources`` so :func:`mnistp4.api.split_by_source` keeps every writer on
    one side of a split.
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

    ``register(name, spec)``: ``spec`` is a :class:`mnistp4.api.ModelSpec` whose ``build()``
    returns a fresh ``torch.nn.Module`` taking ``(N, 1, 28, 28)`` and returning ``(N, 10)`` logits.
    Its optional ``recipe`` and ``augment`` name the recipe and augmentations the architecture
    trains best with; they replace the shipped defaults, never a value the user set.
    """


@hookspec
def register_recipes(register):
    """Register training recipes (optimizer, schedule, batch size, epochs...).

    ``register(name, recipe)``: a :class:`mnistp4.api.Recipe` (epochs, batch size, optimizer,
    learning rate and schedule, label smoothing, weight averaging, data pipeline).
    """


@hookspec
def register_model_formats(register):
    """Register model file formats that ``mnistp4 evaluate`` can score.

    ``register(suffix, loader)``: ``suffix`` like ``".onnx"``; ``loader(path) -> predict`` where
    ``predict(images_uint8 (N, 28, 28)) -> logits numpy (N, 10)``. ``quantize`` scores the files
    a quantizer writes with the loader of their suffix.
    """


@hookspec
def register_quantizers(register):
    """Register quantization backends (``espdl`` over esp-ppq...).

    ``register(name, quantizer)``: ``quantizer(ctx, request: mnistp4.api.QuantRequest) ->
    mnistp4.api.QuantResult`` writes ``request.out_path`` from ``request.onnx_path`` (a private
    copy it may rewrite), ``request.bits`` wide for ``request.target``, calibrated on
    ``request.calib_images`` (uint8 (N, 28, 28)). Optional attributes: ``suffix`` (the file suffix
    it writes; default ``".onnx"``) and ``widths`` (the bit widths it supports). Config key
    ``quantizer`` picks the backend ``mnistp4 quantize`` and the ``quantize`` step use.
    """


@hookspec
def register_deploy_targets(register):
    """Register deploy targets (``crowpanel-p4``, ``bundle``...).

    ``register(name, target)``: ``target(ctx, request: mnistp4.api.DeployRequest) ->
    mnistp4.api.DeployResult``. ``request.dry_run`` forbids writing outside ``request.out_dir``;
    ``request.port`` is the board's serial port or None - a target that needs no board does its
    job without one (``mnistp4 run`` passes ``dry_run=False``). Config key ``deploy_target``.
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
    ``deploy``... this way. A name that exists already is an error unless the plugin writes
    ``@cli.command(NAME, override=True)``. The core adds a placeholder that says "no plugin provides
    it yet" for every stage command that no plugin added. A command receives the context with
    ``@mnistp4.pass_context`` (first argument).
    """


@hookspec
def register_pipeline_steps(register):
    """Add steps to ``mnistp4 run``, the whole pipeline on the configured defaults.

    ``register(name, step)``: ``step`` is a :class:`mnistp4.api.PipelineStep` with an ``order``
    (steps run in ascending order; shipped: segment 10, train 20, qat 25, quantize 30, deploy 40)
    and a ``run(ctx, state) -> dict`` function. ``state`` (:data:`mnistp4.api.PipelineState`) is a
    dict shared by the steps: a step reads what earlier steps stored (``state["data_dir"]``,
    ``state["run_dir"]``, ``state["model_file"]``) and returns what it adds; the returned dict is
    merged into ``state`` and shown in the summary.
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
    :class:`mnistp4.api.Digit` (empty on failure) and ``error`` the message or ``None``."""


@hookspec
def on_step_end(name, result):
    """Called after each step of ``mnistp4 run`` with the step's name and returned dict."""
