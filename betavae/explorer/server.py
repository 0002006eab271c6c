"""The latent explorer's local web server: the static page and a small JSON/PNG API over a ``LatentExplorer``.

Standard library only (``http.server.ThreadingHTTPServer``). Every answer is a GET:

====================================  ===========================================================================
``/``                                 the page (``betavae/explorer/static/index.html``: one file, no CDN)
``/api/info``                         JSON: the model, its dimensions in display order with labels, KL, slider
                                      centers and scales, the number of images, classes, notes
``/api/decode?z=…[&set=7:1.3][&label=k][&index=i]``
                                      the decode of code ``z`` (D comma-separated numbers; none: the center) with
                                      dimensions overridden by ``set``, as a PNG (the model's size); with
                                      ``index`` its PSNR/SSIM against that image in ``X-PSNR``/``X-SSIM``
``/api/encode?index=i``               JSON: validation image ``i``'s code (μ), class, reconstruction PSNR and SSIM
``/api/image?index=i``                validation image ``i`` as a PNG
``/api/prior?seed=s``                 JSON: a random code (``{"z": […]}``)
``/api/save?z=…[&label=k]``           the decode enlarged, with its z values, as a PNG to download
====================================  ===========================================================================

A bad request (a code of the wrong length, a value that is not a finite number, a dimension or an image
out of range) gets status 400 and ``{"error": "<what and what is allowed>"}``; an unknown path 404.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from betavae.errors import ConfigError
from betavae.explorer.session import LatentExplorer, RequestError, png_bytes

PAGE = ("static", "index.html")
#: path → the handler's method
ROUTES = {
    "/": "get_page",
    "/index.html": "get_page",
    "/api/info": "get_info",
    "/api/decode": "get_decode",
    "/api/encode": "get_encode",
    "/api/image": "get_image",
    "/api/prior": "get_prior",
    "/api/save": "get_save",
}


def page_html() -> bytes:
    """The page, read from the installed package (``betavae/explorer/static/index.html``)."""
    return resources.files("betavae.explorer").joinpath(*PAGE).read_bytes()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def free_port(host: str, start: int, tries: int = 50) -> int | None:
    """The first port after ``start`` that ``host`` can listen on, or ``None`` among the next ``tries``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(start + 1, min(start + 1 + tries, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
                return port
            except OSError:
                continue
    return None


class ExplorerHandler(BaseHTTPRequestHandler):
    """Answers the page's requests from ``server.explorer`` (a ``LatentExplorer``)."""

    server: ExplorerServer
    server_version = "betavae-explorer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        name = ROUTES.get(url.path)
        if name is None:
            self.send_json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
            return
        route = getattr(self, name)
        try:
            route(query)
        except RequestError as err:
            self.send_json({"error": str(err)}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away mid-answer
        except Exception as err:  # a bug: say so on the page and keep serving
            traceback.print_exc(file=sys.stderr)
            self.send_json({"error": f"{type(err).__name__}: {err}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    # ----------------------------------------------------------------- answers
    def send(self, body: bytes, content_type: str, status: int = HTTPStatus.OK, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, payload: Any, status: int = HTTPStatus.OK) -> None:
        self.send(json.dumps(payload).encode(), "application/json; charset=utf-8", status)

    def get_page(self, query: dict[str, str]) -> None:
        self.send(page_html(), "text/html; charset=utf-8")

    def get_info(self, query: dict[str, str]) -> None:
        self.send_json(self.server.explorer.info())

    def get_decode(self, query: dict[str, str]) -> None:
        explorer, start = self.server.explorer, time.perf_counter()
        z = explorer.code(query.get("z"), query.get("set"))
        pixels = explorer.decode(z, explorer.label(query.get("label")))
        headers = {}
        if query.get("index", "") != "":
            scores = explorer.scores(pixels, query["index"])
            headers = {"X_PSNR": f"{scores['psnr']:.4f}", "X_SSIM": f"{scores['ssim']:.4f}"}
        body = png_bytes(pixels)
        headers["X_Decode_Ms"] = f"{(time.perf_counter() - start) * 1000:.2f}"
        self.send(body, "image/png", **headers)

    def get_encode(self, query: dict[str, str]) -> None:
        self.send_json(self.server.explorer.encode(query.get("index", "")))

    def get_image(self, query: dict[str, str]) -> None:
        self.send(png_bytes(self.server.explorer.original(query.get("index", ""))), "image/png")

    def get_prior(self, query: dict[str, str]) -> None:
        self.send_json({"z": self.server.explorer.prior(query.get("seed"))})

    def get_save(self, query: dict[str, str]) -> None:
        explorer = self.server.explorer
        body = explorer.save_png(explorer.code(query.get("z"), query.get("set")), explorer.label(query.get("label")))
        name = f"{explorer.file_stem()}.png"
        self.send(body, "image/png", Content_Disposition=f'attachment; filename="{name}"')


class ExplorerServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` over a ``LatentExplorer``; IPv6 when ``host`` is an IPv6 address."""

    daemon_threads = True

    def __init__(self, explorer: LatentExplorer, host: str, port: int, verbose: bool = False) -> None:
        self.explorer = explorer
        self.verbose = verbose
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), ExplorerHandler)

    @property
    def url(self) -> str:
        """The page's address (this machine's name for a wildcard host)."""
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def start_server(explorer: LatentExplorer, host: str = "127.0.0.1", port: int = 8765, verbose: bool = False):
    """Bind the explorer's server (not yet serving: call ``serve_forever``). ``port`` 0 takes a free one.

    Raises:
        ConfigError: the port is in use (the message suggests a free one), or ``host`` cannot be listened on.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535 (0: any free port); got {port}")
    try:
        return ExplorerServer(explorer, host, port, verbose)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            other = free_port(host, port)
            hint = f"pass --port {other} (free now)" if other else "pass another --port"
            raise ConfigError(
                f"port {port} on {host} is in use (another explorer or server?); {hint}, or --port 0 for any free port"
            ) from None
        if err.errno == errno.EACCES:
            raise ConfigError(
                f"no permission to listen on {host}:{port} (ports below 1024 need root); "
                "pass --port 8765 or another above 1023"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}; check --host") from None
