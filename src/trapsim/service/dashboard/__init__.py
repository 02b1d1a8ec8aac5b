"""The web dashboard of ``trapsim serve`` at ``/dashboard``, served by the app itself.

The page (``index.html``, ``dashboard.js``, ``dashboard.css`` in this package) reads
the REST API for the initial state and the WebSocket ``/ws`` for live updates;
plotly.js is the copy inside the installed ``plotly`` Python package
(``plotly/package_data/plotly.min.js``), so nothing is fetched from a CDN and the
page works with no network beyond the server. Every file is answered with an
``ETag`` (a ``304`` when the browser already has it), gzip when the browser takes
it, and a ``Cache-Control``: the page's own files are revalidated on every load,
plotly.js is kept a day.
"""

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import plotly
from fastapi import FastAPI, Request, Response

JS = "text/javascript; charset=utf-8"
PAGES = {"/dashboard": ("index.html", "text/html; charset=utf-8"),
         "/dashboard/dashboard.js": ("dashboard.js", JS),
         "/dashboard/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
"""The page's own files (in this package) by path, with their media types."""
PLOTLY_MAX_AGE = 86_400
"""Seconds a browser keeps plotly.js before revalidating it."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: its bytes, gzipped bytes, ETag and headers."""

    body: bytes
    gzipped: bytes
    etag: str
    media_type: str
    cache_control: str


def _asset(body: bytes, media_type: str, cache_control: str) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, gzip.compress(body, 6, mtime=0), etag, media_type, cache_control)


@cache
def own(path: str) -> Asset:
    """The page's file served at ``path`` (a key of :data:`PAGES`), read once."""
    name, media_type = PAGES[path]
    return _asset(files(__name__).joinpath(name).read_bytes(), media_type, "no-cache")


@cache
def plotly_js() -> Asset:
    """plotly.js as shipped inside the installed ``plotly`` package, read once."""
    body = files(plotly).joinpath("package_data", "plotly.min.js").read_bytes()
    return _asset(body, JS, f"public, max-age={PLOTLY_MAX_AGE}")


def respond(asset: Asset, request: Request) -> Response:
    """``asset`` for ``request``: 304 if its ``If-None-Match`` has the ETag, gzip if taken."""
    headers = {"ETag": asset.etag, "Cache-Control": asset.cache_control,
               "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(asset.gzipped, media_type=asset.media_type,
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def add_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on ``app``: ``GET /dashboard`` (the page) and its files
    ``/dashboard/dashboard.js``, ``/dashboard/dashboard.css`` and ``/dashboard/plotly.min.js``."""
    for path in PAGES:
        app.api_route(path, methods=["GET", "HEAD"], response_class=Response,
                      include_in_schema=path == "/dashboard",
                      summary="The web dashboard (HTML: live charts over the REST API and /ws)",
                      )(_route(path))

    @app.api_route("/dashboard/plotly.min.js", methods=["GET", "HEAD"], include_in_schema=False)
    def dashboard_plotly(request: Request) -> Response:
        return respond(plotly_js(), request)


def _route(path: str):
    def route(request: Request) -> Response:
        return respond(own(path), request)

    route.__name__ = "dashboard" + path.removeprefix("/dashboard").replace("/", "_").replace(
        ".", "_")
    return route
