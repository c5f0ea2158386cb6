"""The ``mnistp4`` command line. The core owns ``plugins``, ``config`` and ``run``; stage plugins
add ``sheet``, ``segment``, ``label``, ``train``, ``evaluate``, ``quantize``, ``deploy``, ``serve``
through ``register_commands``. Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from .app import App, create_app
from .errors import Mnistp4Error, RegistrationConflict
from .locks import held

#: in the project folder while `mnistp4 run` runs there (its owner file says which process)
PIPELINE_LOCK = ".mnistp4-run.lock"

#: commands that stage plugins provide; until one does, the command says so and fails
STAGE_COMMANDS = {
    "sheet": "collection sheet templates",
    "segment": "cut sheets into labelled 28x28 digits",
    "label": "fix a label or reject a digit",
    "train": "train a model",
    "evaluate": "score a model file on a test set",
    "quantize": "quantize a model for the ESP32-P4",
    "deploy": "flash a model to a board or write a flash bundle",
    "serve": "collection and review pages in the browser",
}

_APP: App | None = None


def get_app() -> App:
    """The application of the running command (config, registry, console). Plugin commands get it
    with ``@mnistp4.pass_context`` instead."""
    if _APP is None:
        raise RuntimeError("mnistp4 app is not initialised")
    return _APP


#: where ``--json`` output goes: the process's stdout, kept aside while everything else that would
#: print there (a plugin's print(), a progress bar) goes to stderr (see :func:`main`)
_JSON_OUT: list = []


def print_json(obj) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    from .io import _json_default

    click.echo(json.dumps(obj, indent=2, default=_json_default), file=_JSON_OUT[-1] if _JSON_OUT else None)


class PluginGroup(click.Group):
    """The ``mnistp4`` group: commands follow the registries' override rule. A plugin adding a
    command that exists already must say ``@cli.command(NAME, override=True)``; who provides each
    command (and whom it replaced) is kept for ``mnistp4 plugins``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_plugin: str | None = None
        self.owners: dict[str, str] = {}
        self.replaced: dict[str, list[str]] = {}
        self._override = False

    def command(self, *args, override: bool = False, **kwargs):
        return self._overriding(super().command, args, kwargs, override)

    def group(self, *args, override: bool = False, **kwargs):
        return self._overriding(super().group, args, kwargs, override)

    def _overriding(self, make, args, kwargs, override: bool):
        if args and callable(args[0]):  # bare @cli.command
            return make(*args, **kwargs)
        inner = make(*args, **kwargs)

        def decorator(f):
            self._override = override
            try:
                return inner(f)
            finally:
                self._override = False

        return decorator

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name or ""
        owner = self.current_plugin or "core"
        if name in self.commands and name in self.owners:
            if not (self._override or getattr(cmd, "mnistp4_override", False)):
                raise RegistrationConflict(
                    f"command {name!r} is provided by plugin {self.owners[name]!r} and again by plugin "
                    f"{owner!r}; write @cli.command({name!r}, override=True) in {owner!r} to replace it, "
                    f"or choose another name"
                )
            self.replaced[name] = self.replaced.get(name, []) + [self.owners[name]]
        super().add_command(cmd, name)
        self.owners[name] = owner


def build_cli(app: App) -> click.Group:
    @click.group(
        cls=PluginGroup,
        context_settings={"help_option_names": ["-h", "--help"]},
        help="Handwritten digits from sheets to an ESP32-P4 CrowPanel: segment, train, "
        "quantize, deploy. Global options go before the command.",
    )
    @click.option(
        "--plugins-dir",
        "plugins_dir",
        multiple=True,
        metavar="PATH",
        help="extra plugin folder, .py file or module (repeatable)",
    )
    @click.option("--config", "config_file", multiple=True, metavar="FILE", help="extra TOML config file")
    @click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="override a config key")
    @click.option("-v", "--verbose", count=True, help="more log output (-v info, -vv debug)")
    @click.option("-q", "--quiet", is_flag=True, help="errors only (no warnings)")
    @click.version_option(package_name="mnistp4")
    def cli(plugins_dir, config_file, settings, verbose, quiet):
        pass  # parsed before the group is built (see main), listed here for --help

    @cli.command("plugins", help="List plugins, where they come from and what they register.")
    @click.option("--json", "as_json", is_flag=True)
    def plugins_cmd(as_json):
        rows: list[dict[str, Any]] = []
        for p in app.manager.plugins:
            registers = app.registry.by_plugin(p.name)
            commands = sorted(n for n, owner in cli.owners.items() if owner == p.name)
            if commands:
                registers["commands"] = commands
            rows.append(
                {"name": p.name, "origin": p.origin, "version": p.version, "hooks": p.hooks, "registers": registers}
            )
        if as_json:
            kinds = {
                kind: [
                    {"name": e.name, "plugin": e.plugin, "description": e.description, "replaced": e.replaced}
                    for e in app.registry.entries(kind)
                ]
                for kind in app.registry.kinds()
            }
            print_json(
                {
                    "plugins": rows,
                    "registry": kinds,
                    "commands": {
                        n: {"plugin": o, "replaced": cli.replaced.get(n, [])} for n, o in sorted(cli.owners.items())
                    },
                }
            )
            return
        table = Table(title="mnistp4 plugins (load order)")
        for col in ("plugin", "from", "registers", "hooks"):
            table.add_column(col)
        for r in rows:
            regs = "\n".join(f"{k}: {', '.join(v)}" for k, v in r["registers"].items())
            events = ", ".join(
                h
                for h in r["hooks"]
                if not h.startswith("register_") or h in ("register_commands", "register_config_keys")
            )
            table.add_row(r["name"], r["origin"], regs, events)
        app.console.print(table)

    @cli.command("config", help="Print the effective configuration and where each value came from.")
    @click.option("--json", "as_json", is_flag=True)
    def config_cmd(as_json):
        if as_json:
            print_json(
                {"root": str(app.root), "values": {k: {"value": v, "origin": o} for k, v, o in app.config.items()}}
            )
            return
        table = Table(title=f"mnistp4 config (project root: {app.root})")
        for col in ("key", "value", "from", "meaning"):
            table.add_column(col)
        for k, v, o in app.config.items():
            table.add_row(k, repr(v), o, app.config.keys[k].help)
        app.console.print(table)

    @cli.command(
        "run",
        help="Run the whole pipeline on the configured defaults "
        "(segment, train + export, quantize, deploy: dry run unless a port is set).",
    )
    @click.option("--port", default=None, help="serial port: flash the board instead of a dry run")
    @click.option("--epochs", type=int, default=None)
    @click.option("--model", default=None)
    @click.option("--only", multiple=True, help="run only these steps (repeatable)")
    @click.option("--json", "as_json", is_flag=True)
    def run_cmd(port, epochs, model, only, as_json):
        app.override(port=port, epochs=epochs, model=model)
        steps = sorted(app.registry.entries("pipeline_steps"), key=lambda e: e.obj.order)
        if only:
            unknown = set(only) - {e.name for e in steps}
            if unknown:
                raise click.UsageError(f"unknown step(s) {sorted(unknown)}; steps: {[e.name for e in steps]}")
            steps = [e for e in steps if e.name in only]
        if not steps:
            raise Mnistp4Error("no plugin provides any pipeline step yet; see `mnistp4 plugins`")
        state: dict = {}
        summary: list[dict[str, Any]] = []
        # one pipeline per project at a time: a second `mnistp4 run` would retrain the same run dirs
        # between this one's steps; it fails at once, naming this one
        with held(
            app.root / PIPELINE_LOCK,
            what=f"the project {app.root} (`mnistp4 run`)",
            hint="wait for that run to finish",
        ):
            for entry in steps:
                if not as_json:
                    app.console.rule(f"[bold]{entry.name}[/] — {entry.description or entry.obj.description}")
                t0 = time.perf_counter()
                result = entry.bound().run(app, state) or {}  # a failure names the step's plugin
                seconds = time.perf_counter() - t0
                state.update(result)
                app.emit("on_step_end", name=entry.name, result=result)
                summary.append({"step": entry.name, "seconds": round(seconds, 1), "result": result})
        if as_json:
            print_json({"steps": summary})
            return
        table = Table(title="mnistp4 run")
        for col in ("step", "seconds", "result"):
            table.add_column(col)
        for s in summary:
            table.add_row(s["step"], f"{s['seconds']:.1f}", "\n".join(f"{k}: {v}" for k, v in s["result"].items()))
        app.console.print(table)

    from .scaffold import plugin_group

    cli.add_command(plugin_group())
    for info, fn in app.manager.impls("register_commands"):
        cli.current_plugin = info.name  # whose commands these are (override rule, `mnistp4 plugins`)
        try:
            app.manager.call(info, fn, "register_commands", cli=cli)
        finally:
            cli.current_plugin = None
    for name, what in STAGE_COMMANDS.items():
        if name not in cli.commands:
            cli.add_command(_placeholder(name, what))
    return cli


def _placeholder(name: str, what: str) -> click.Command:
    @click.command(
        name,
        help=f"{what} (no plugin provides this command yet)",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def cmd():
        raise Mnistp4Error(
            f"no plugin provides `mnistp4 {name}` yet ({what}); "
            f"install or add a plugin that registers it (see `mnistp4 plugins`)"
        )

    return cmd


def _pre_parse(argv: list[str]) -> tuple[list[str], list[str], list[str], int]:
    """Global options are needed before the group exists (they decide which plugins load).
    The last item is the verbosity: -1 quiet, 0 warnings (default), 1 info, 2 debug."""
    dirs: list[str] = []
    files: list[str] = []
    settings: list[str] = []
    verbose = 0
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            break
        for flag, bucket in (("--plugins-dir", dirs), ("--config", files), ("--set", settings)):
            if a == flag and i + 1 < len(argv):
                bucket.append(argv[i + 1])
                i += 1
                break
            if a.startswith(flag + "="):
                bucket.append(a.split("=", 1)[1])
                break
        else:
            if a in ("-q", "--quiet"):
                verbose = -1
            elif a in ("-v", "--verbose"):
                verbose += 1
            elif a.startswith("-v") and set(a[1:]) == {"v"}:
                verbose += len(a) - 1
        i += 1
    return dirs, files, settings, verbose


def main(argv: list[str] | None = None) -> int:
    global _APP
    argv = list(sys.argv[1:] if argv is None else argv)
    dirs, files, settings, verbose = _pre_parse(argv)
    json_out = "--json" in argv
    console = Console(stderr=json_out)  # with --json, what the commands print for people goes to stderr
    err = Console(stderr=True)
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    # called in-process (tests, a program embedding the CLI), the caller's logging is given back on
    # return: a server thread of the caller's own must not log through this command's handler and level
    root = logging.getLogger()
    callers_logging = (root.level, root.handlers[:])
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)], force=True
    )
    if json_out:  # stdout carries the JSON alone: what plugins and stages print goes to stderr
        _JSON_OUT.append(sys.stdout)
        sys.stdout = sys.stderr
    try:
        _APP = create_app(plugin_dirs=dirs, config_files=[Path(f) for f in files], settings=settings, console=console)
        cli = build_cli(_APP)
        # without standalone mode click returns the code of `ctx.exit(n)` / `Exit(n)` instead of exiting
        rc = cli.main(args=argv, prog_name="mnistp4", standalone_mode=False, obj=_APP)
        return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2 if isinstance(e, click.UsageError) else 1
    except click.exceptions.Abort:
        err.print("[red]aborted[/]")
        return 1
    except Mnistp4Error as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return e.exit_code
    except OSError as e:  # a file-system fault no stage turned into a message: still one line, exit 1
        from .io import fs_error

        err.print(f"[bold red]error:[/] {escape(str(fs_error(e, action='use')))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    finally:
        _APP = None
        if json_out:
            sys.stdout = _JSON_OUT.pop()
        root.setLevel(callers_logging[0])
        root.handlers[:] = callers_logging[1]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
