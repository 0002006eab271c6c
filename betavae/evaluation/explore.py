"""``explore``: a checkpoint's latent space as a local web page, a slider per dimension (``betavae.explorer``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.evaluation.evaluate import checkpoint_path, load_weights
from betavae.explorer import ExplorerServer, LatentExplorer, is_loopback, start_server
from betavae.loaded_checkpoint import LoadedCheckpoint
from betavae.run_folders import run_dir_of
from betavae.run_labels import datamodule_label


def explore_checkpoint(
    model: nn.Module,
    datamodule: Any,
    ckpt_path: str | Path | LoadedCheckpoint,
    host: str = "127.0.0.1",
    port: int = 8765,
    num_images: int = 32,
    kl_images: int | None = 5000,
    device: torch.device | str = "cpu",
    weights_only: bool = True,
    serve: bool = True,
    verbose: bool = False,
) -> ExplorerServer:
    """Load a checkpoint, measure its dimensions on the validation split and serve the explorer's page.

    Prints the page's address, then serves until Ctrl-C. A host that is reachable from other machines gets
    a warning first: the page has no authentication.

    Args:
        model: The model, built with the checkpoint's hyperparameters; its weights are loaded here.
        datamodule: The run's data module: its validation split gives the thumbnails, KL and captions.
        ckpt_path: The checkpoint, or the ``LoadedCheckpoint`` the CLI already read.
        host: The address to listen on; 127.0.0.1 (this machine only) unless given.
        port: The port; 0 takes a free one.
        num_images: Validation images offered as starting points.
        kl_images: Validation images the KL and the captions are measured on; ``None``: all.
        device: Where the model runs.
        weights_only: Passed to ``torch.load`` (see ``load_weights``).
        serve: Serve until interrupted; ``False`` returns the bound server without serving (tests).
        verbose: Log every request.

    Returns:
        The server (closed again once ``serve`` ends).

    Raises:
        ConfigError: the model cannot decode; the port is in use (a free one is suggested); the host
            cannot be listened on.
    """
    if not host:
        raise ConfigError("--host must name an address, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
    info = load_weights(model, ckpt_path, weights_only)
    path = checkpoint_path(ckpt_path)
    source = {
        "checkpoint": str(path.expanduser().resolve()),
        "run": str(run_dir_of(path)),
        "dataset": datamodule_label(datamodule),
        **info,
    }
    explorer = LatentExplorer(model, datamodule, num_images, kl_images, source, device)
    server = start_server(explorer, host, port, verbose)
    if not is_loopback(host):
        print(
            f"explore: warning: --host {host} serves the page beyond this machine, and it has no authentication: "
            f"anyone who can reach port {server.server_address[1]} can decode with this model and see its "
            "validation images.",
            file=sys.stderr,
            flush=True,
        )
    for note in explorer.notes:
        print(f"explore: {type(model).__name__}: {note}", flush=True)
    active = sum(d.active for d in explorer.dimensions)
    print(
        f"explore: {type(model).__name__} from {source['checkpoint']} (epoch {info['epoch']}), {active} of "
        f"{explorer.latent_dim} dimensions active\nexplore: open {server.url}  (Ctrl-C stops it)",
        flush=True,
    )
    if serve:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("explore: stopped", flush=True)
        finally:
            server.server_close()
    return server
