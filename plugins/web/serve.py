"""``mnistp4 serve``: the tablet collection page and the label review page in the browser.

Binds to 127.0.0.1 unless ``--host`` (config ``serve_host``) says otherwise; ``--host 0.0.0.0``
opens it to the local network so tablets can reach it, and the command prints the addresses to
type into them. Beyond loopback the server needs an access token: it is generated at start and
printed inside those addresses (``?token=...``, kept in a cookie after the first visit);
``--no-token`` opts out. Only the printed addresses (and loopback names, and ``--allow-host``)
are accepted in the ``Host`` header. Submitted sheets go to the raw scans folder (config ``raw_scans``), reviewed
digits come from the data dir (config ``data_dir``). Pages and API: :mod:`mnistp4.stages.web.app`.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from mnistp4 import hookimpl
from mnistp4.api import pass_context
from mnistp4.errors import NotProvided, UsageError
from mnistp4.stages.web.security import LOOPBACK_NAMES, Guard, is_loopback, new_token

log = logging.getLogger(__name__)


@hookimpl
def register_config_keys(register):
    register(
        "serve_host", "127.0.0.1", "address `mnistp4 serve` binds to (0.0.0.0: every interface, for tablets on the LAN)"
    )
    register("serve_port", 8000, "TCP port of `mnistp4 serve`")


@hookimpl
def register_commands(cli):
    @cli.command(
        "serve",
        help="Collection page for tablets and label review page in the browser. "
        "Binds to 127.0.0.1 unless --host says otherwise.",
    )
    @click.option(
        "--host",
        default=None,
        help="address to bind (default: config serve_host, 127.0.0.1); 0.0.0.0 lets tablets on the LAN connect",
    )
    @click.option(
        "--port",
        "http_port",
        type=click.IntRange(0, 65535),
        default=None,
        help="TCP port (default: config serve_port, 8000; 0 = any free port)",
    )
    @click.option(
        "--raw-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="where submitted sheets go (default: config raw_scans)",
    )
    @click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="data dir to review (default: config data_dir)",
    )
    @click.option("--layout", default=None, help="layout the collection page starts with (default: config layout)")
    @click.option(
        "--model",
        "model_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="model file that ranks suspicious labels: .onnx, .pt or any registered model format "
        "(default: the newest run in runs_dir, its model.onnx or model.pt); an .espdl also "
        "answers /try (default there: the newest verified Int8 file, as deploy takes it)",
    )
    @click.option("--no-model", is_flag=True, help="do not rank by a model, only by QA flags")
    @click.option(
        "--no-token",
        is_flag=True,
        help="beyond loopback, let anyone on the network in without the access token (not recommended)",
    )
    @click.option(
        "--token",
        "force_token",
        is_flag=True,
        help="require the access token on loopback too (a computer shared with other users)",
    )
    @click.option(
        "--allow-host",
        "allow_hosts",
        multiple=True,
        metavar="NAME",
        help="another name this server may be reached by (Host header), e.g. mypc.local (repeatable)",
    )
    @pass_context
    def serve(
        app, host, http_port, raw_dir, data_dir, layout, model_file, no_model, no_token, force_token, allow_hosts
    ):
        app.override(serve_host=host, serve_port=http_port, layout=layout)
        bind = app.config["serve_host"]
        if no_token and force_token:
            raise UsageError("--token and --no-token contradict each other; give one")
        guard = make_guard(bind, no_token=no_token, force_token=force_token, extra_hosts=allow_hosts)
        web = build_web_app(
            app, raw_dir=raw_dir, data_dir=data_dir, model_file=model_file, no_model=no_model, guard=guard
        )
        from mnistp4.stages.web.try_page import single_thread_blas

        single_thread_blas()  # /try answers in milliseconds only without OpenBLAS's threads (try_page)
        run_server(app, web, bind, app.config["serve_port"])


def shown_addresses(host: str) -> list[str]:
    """The addresses the command prints (and the Host names it accepts besides loopback)."""
    if is_loopback(host):
        return ["127.0.0.1"]
    if host in ("0.0.0.0", "", "::"):
        return ["127.0.0.1", *lan_addresses()]
    return [host]


def make_guard(host: str, *, no_token: bool = False, force_token: bool = False, extra_hosts=()) -> Guard:
    """Allowed Host names and tokens for a server bound to ``host``: a token unless it is loopback
    (``force_token``: there too) or ``no_token``."""
    names = set(LOOPBACK_NAMES) | {a.lower() for a in shown_addresses(host)} | {h.lower() for h in extra_hosts}
    token = new_token() if force_token or not (is_loopback(host) or no_token) else None
    return Guard(allowed_hosts=frozenset(names), access_token=token)


def build_web_app(app, *, raw_dir=None, data_dir=None, model_file=None, no_model=False, guard: Guard | None = None):
    """The Flask app for this project's config (used by the command and by tests)."""
    from mnistp4.stages.web.app import WebSettings, create_web_app
    from mnistp4.stages.web.review import newest_model, onnx_predictor
    from mnistp4.stages.web.sheets import layout_names, render_template_for

    raw = (Path(raw_dir) if raw_dir else app.config.path("raw_scans")).resolve()
    data = (Path(data_dir) if data_dir else app.config.path("data_dir")).resolve()
    if raw.exists() and not raw.is_dir():
        raise UsageError(f"raw scans folder {raw} is a file; pass --raw-dir with a folder")
    names = layout_names(app)
    if not names:
        raise NotProvided("no plugin provides a sheet layout, so there is nothing to collect on; see `mnistp4 plugins`")
    default = app.config["layout"]
    if default not in names:
        raise UsageError(f"layout {default!r} does not exist; known layouts: {', '.join(names)}")
    model = None
    if not no_model:
        model = Path(model_file) if model_file else newest_model(app.config.path("runs_dir"))
        if model_file and not model.is_file():
            raise UsageError(f"model file {model} does not exist; pass a run's model.onnx or --no-model")
    return create_web_app(
        WebSettings(
            raw_dir=raw,
            data_dir=data,
            default_layout=default,
            layout_names=lambda: layout_names(app),
            get_template=lambda name: render_template_for(app, name),
            get_layout=lambda name: app.get("sheet_layouts", name),
            model_path=model,
            load_predictor=_predictor_loader(app, onnx_predictor),
            guard=guard or Guard(),
            # /try answers with an .espdl --model, else the newest verified Int8 file (what deploy flashes)
            try_model=Path(model_file) if model_file and Path(model_file).suffix == ".espdl" else None,
            runs_dir=app.config.path("runs_dir"),
            ctx=app,
        )
    )


def _predictor_loader(app, fallback):
    """The registered loader for a model's suffix (``model_formats``), else onnxruntime."""

    def load(path: Path):
        try:
            loader = app.get("model_formats", path.suffix)
        except NotProvided:
            return fallback(path)
        return loader(path)

    return load


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (best effort, no traffic is sent)."""
    found = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.254.254.254", 1))  # UDP connect only picks a route; nothing is sent
            found.add(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127."))


def run_server(app, web, host: str, port: int) -> None:
    """Serve until Ctrl-C, printing where the pages are."""
    from mnistp4.stages.web.lan_server import make_lan_server

    try:
        server = make_lan_server(host, port, web)
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port or stop the program that uses it"
        ) from None
    port = server.server_port
    settings = web.extensions["mnistp4"]["settings"]
    guard = settings.guard
    query = f"?token={guard.access_token}" if guard.access_token else ""
    c = app.console
    c.print(f"[bold]mnistp4 serve[/] listening on {host}:{port}")
    for addr in shown_addresses(host):
        shown = f"[{addr}]" if ":" in addr else addr
        c.print(f"  collection page: [bold cyan]http://{shown}:{port}/collect{query}[/]", highlight=False)
        c.print(f"  review page:     [bold cyan]http://{shown}:{port}/review{query}[/]", highlight=False)
        c.print(f"  try the model:   [bold cyan]http://{shown}:{port}/try{query}[/]", highlight=False)
    if is_loopback(host):
        c.print("only this computer can connect; use --host 0.0.0.0 to let tablets on the LAN in")
        if guard.access_token:
            c.print("and only with the access token in the address above")
    elif guard.access_token:
        c.print(
            "open to the network: only browsers that opened one of these addresses (with its token) "
            "get in; keep the token to people you trust"
        )
    else:
        c.print(
            "[yellow]open to the network without a token (--no-token): anyone who can reach this address "
            "can submit sheets and change labels[/]"
        )
    c.print(f"  sheets go to {settings.raw_dir}, digits are reviewed in {settings.data_dir}")
    c.print(f"  ranking model: {settings.model_path or 'none (flags only)'}")
    c.print("press Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        c.print("stopped")
