"""The interactive latent explorer (``python -m betavae explore``): a local page with a slider per latent
dimension, decoded on the server as the sliders move (``session``: the model side; ``server``: the HTTP side;
``static/index.html``: the page)."""

from betavae.explorer.server import ExplorerServer, is_loopback, start_server
from betavae.explorer.session import SPAN, Dimension, LatentExplorer, RequestError, png_bytes

__all__ = [
    "SPAN",
    "Dimension",
    "ExplorerServer",
    "LatentExplorer",
    "RequestError",
    "is_loopback",
    "png_bytes",
    "start_server",
]
