"""The latent explorer (``python -m betavae explore``): its endpoints, its errors, and the page in a real browser."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHAPES_MODEL, conv_nets
from PIL import Image

from betavae.cli import main
from betavae.data import ShapesDataModule
from betavae.evaluation.explore import explore_checkpoint
from betavae.explorer import LatentExplorer, RequestError, start_server
from betavae.explorer.server import page_html
from betavae.models import DCGAN, Autoencoder, BetaVAE, ConditionalVAE
from betavae.nets import LinearNet, RadfordDiscriminator, RadfordGenerator
from betavae.scoring.traversal import row_label

REPO = Path(__file__).resolve().parents[1]
LATENT = 4


def tiny_data() -> ShapesDataModule:
    return ShapesDataModule(num_images=48, image_size=16, batch_size=8)


def tiny_vae(seed: int = 0) -> BetaVAE:
    torch.manual_seed(seed)
    model = BetaVAE(in_channels=1, image_size=16, **conv_nets(8, 16), latent_dim=LATENT)
    with torch.no_grad():  # dimension 2 is the prior for every image: mean KL exactly 0, an inactive dimension
        for layer in (model.fc_mu, model.fc_logvar):
            layer.weight[2].zero_()
            layer.bias[2].zero_()
    return model


class Served:
    """A ``LatentExplorer`` served on a free loopback port in a thread; ``get`` returns (status, headers, body)."""

    def __init__(self, explorer: LatentExplorer) -> None:
        self.explorer = explorer
        self.server = start_server(explorer, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served():
    data = tiny_data()
    served = Served(LatentExplorer(tiny_vae(), data, num_images=6, source={"checkpoint": "/runs/x/last.ckpt"}))
    yield served
    served.close()


def decoded_by_hand(model: BetaVAE, z: list[float]) -> np.ndarray:
    """What the decode endpoint must show: the model's [0, 1] decode of z as 8-bit grey levels (H, W)."""
    with torch.no_grad():
        pixels = model.to_pixels(model.decode(torch.tensor([z], dtype=torch.float32)))[0, 0]
    return (pixels * 255).round().to(torch.uint8).numpy()


def test_info_orders_the_active_dimensions_by_kl_and_labels_them_as_the_traversal_rows(served):
    status, _, body = served.get("/api/info")
    info = json.loads(body)
    assert status == 200 and info["model"] == "BetaVAE" and info["latent_dim"] == LATENT and info["prior"] is True
    assert info["image_shape"] == [1, 16, 16] and info["num_images"] == 6 and info["has_encoder"] is True
    dims = info["dimensions"]
    assert [d["index"] for d in dims][-1] == 2 and dims[-1]["active"] is False and dims[-1]["kl"] == 0.0
    active = [d for d in dims if d["active"]]
    assert len(active) == 3 and [d["kl"] for d in active] == sorted((d["kl"] for d in active), reverse=True)
    kl = torch.zeros(LATENT)
    for d in dims:
        kl[d["index"]] = d["kl"]
        assert (d["center"], d["scale"]) == (0.0, 1.0)  # a VAE: sliders over the prior's [-3, 3]
    for d in active:  # shapes have factors: each active dimension names the one it predicts best
        assert d["caption"] and (" (MI " in d["caption"]) and d["label"] == row_label(d["index"], kl, d["caption"])
    assert dims[-1]["label"] == "z2 · KL 0.00 · inactive"


def test_decode_answers_a_png_of_the_models_size_with_the_models_pixels(served):
    z = [0.5, -1.25, 0.0, 2.0]
    status, headers, body = served.get("/api/decode?z=" + ",".join(map(str, z)))
    assert status == 200 and headers["Content-Type"] == "image/png" and float(headers["X-Decode-Ms"]) > 0
    image = Image.open(io.BytesIO(body))
    assert image.size == (16, 16) and image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), decoded_by_hand(served.explorer.model, z))
    # set= overrides dimensions of the center (z = 0): the same image as the whole code
    _, _, same = served.get("/api/decode?set=0:0.5,1:-1.25,3:2")
    assert same == body
    _, _, moved = served.get("/api/decode?z=0.5,-1.25,0,2&set=3:-3")
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(moved))), np.asarray(image))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/decode?z=1,2", "z has 2 values; the model's code has 4 dimensions"),
        ("/api/decode?z=1,x,0,0", "z must be 4 comma-separated numbers"),
        ("/api/decode?z=nan,0,0,inf", "z must be finite; dimension(s) [0, 3] are not"),
        ("/api/decode?set=4:1", "dimension 4 is out of range: the model has 4 latent dimensions (0..3)"),
        ("/api/decode?set=-1:1", "dimension -1 is out of range"),
        ("/api/decode?set=1=2", "set takes dim:value pairs"),
        ("/api/encode?index=6", "image 6 is out of range: there are 6 (0..5)"),
        ("/api/image?index=two", "index must be an integer"),
        ("/api/prior?seed=x", "seed must be an integer"),
    ],
)
def test_a_bad_request_gets_status_400_and_one_message(served, query, message):
    status, headers, body = served.get(query)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert list(json.loads(body)) == ["error"] and message in json.loads(body)["error"]


def test_unknown_paths_get_404(served):
    status, _, body = served.get("/api/nothing")
    assert status == 404 and "no such page: /api/nothing" in json.loads(body)["error"]


def test_encode_gives_mu_and_the_reconstructions_psnr_against_the_original(served):
    model, item = served.explorer.model, served.explorer.images[3]
    status, _, body = served.get("/api/encode?index=3")
    encoded = json.loads(body)
    with torch.no_grad():
        mu = model.encode(item["image"].unsqueeze(0)).mean[0]
        recon = model.to_pixels(model.decode(mu.unsqueeze(0)))
        original = model.to_pixels(item["image"].unsqueeze(0))
    assert status == 200 and encoded["z"] == pytest.approx(mu.tolist(), abs=1e-6) and encoded["label"] is None
    mse = float((recon - original).pow(2).mean())
    assert encoded["psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-4)  # data range 1
    # the decode of that μ, scored against the same image, says the same in its headers
    _, headers, _ = served.get("/api/decode?index=3&z=" + ",".join(map(repr, encoded["z"])))
    assert float(headers["X-PSNR"]) == pytest.approx(encoded["psnr"], abs=1e-3)
    _, _, png = served.get("/api/image?index=3")
    expected = (original[0, 0] * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)


def test_prior_draws_are_seeded_and_saved_pngs_carry_their_z(served):
    one, again, other = (json.loads(served.get(f"/api/prior?seed={s}")[2])["z"] for s in (7, 7, 8))
    assert one == again != other and len(one) == LATENT
    assert one == pytest.approx(torch.randn(LATENT, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    status, headers, body = served.get("/api/save?z=0.5,-1,0,2")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="explore_last.png"'
    saved = Image.open(io.BytesIO(body))
    assert json.loads(saved.text["betavae:z"]) == [0.5, -1.0, 0.0, 2.0]
    assert saved.text["betavae:checkpoint"] == "/runs/x/last.ckpt" and saved.width >= 16 * 8
    enlarged = np.asarray(saved.convert("L"))[: 16 * 8 : 8, : 16 * 8 : 8]  # the image above the z values' footer
    np.testing.assert_array_equal(enlarged, decoded_by_hand(served.explorer.model, [0.5, -1, 0, 2]))


def test_the_page_is_one_offline_file_served_at_the_root(served):
    status, headers, body = served.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and body == page_html()
    html = body.decode()
    assert "/api/decode" in html and 'type="range"' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing from the network (no CDN)
    assert not re.search(r"@import|<link[^>]+stylesheet", html)


def test_a_gan_has_no_encoder_but_its_sliders_and_draws_work():
    torch.manual_seed(0)
    gan = DCGAN(
        partial(RadfordGenerator, features=8),
        partial(RadfordDiscriminator, features=8),
        6,
        in_channels=1,
        image_size=16,
    )
    served = Served(LatentExplorer(gan, tiny_data()))
    try:
        info = json.loads(served.get("/api/info")[2])
        assert info["has_encoder"] is False and info["num_images"] == 0 and info["latent_dim"] == 6
        assert "no encoder (DCGAN has no method encode())" in info["notes"][0]
        assert [d["label"] for d in info["dimensions"]] == [f"z{d}" for d in range(6)]
        status, _, body = served.get("/api/decode?z=0,1,0,0,0,-1")
        assert status == 200 and Image.open(io.BytesIO(body)).size == (16, 16)
        status, _, body = served.get("/api/encode?index=0")
        assert status == 400 and "DCGAN has no encoder here" in json.loads(body)["error"]
    finally:
        served.close()


def test_a_deterministic_code_spans_its_validation_spread():
    torch.manual_seed(0)
    explorer = LatentExplorer(Autoencoder(net=LinearNet, in_channels=1, image_size=16), tiny_data(), num_images=2)
    assert explorer.prior_scale is False and explorer.latent_dim == 2 and all(d.kl is None for d in explorer.dimensions)
    codes = torch.cat([explorer._embed(b["image"], b) for b in tiny_data().eval_batches("val")])
    assert [d.center for d in explorer.dimensions] == pytest.approx(codes.mean(0).tolist(), abs=1e-5)
    assert [d.scale for d in explorer.dimensions] == pytest.approx(codes.std(0).tolist(), abs=1e-5)
    with pytest.raises(RequestError, match="out of range"):
        explorer.code(None, "2:1")


def test_a_conditional_model_decodes_with_the_chosen_class():
    torch.manual_seed(0)
    model = ConditionalVAE(num_classes=3, in_channels=1, image_size=16, **conv_nets(8, 16), latent_dim=LATENT)
    served = Served(LatentExplorer(model, tiny_data(), num_images=4))
    try:
        info = json.loads(served.get("/api/info")[2])
        assert len(info["classes"]) == 3
        encoded = json.loads(served.get("/api/encode?index=2")[2])
        assert encoded["label"] == int(served.explorer.images[2]["label"])
        z = [0.5, -1.0, 0.0, 1.0]
        pngs = [served.get(f"/api/decode?z=0.5,-1,0,1&label={k}")[2] for k in range(3)]
        for k, png in enumerate(pngs):
            with torch.no_grad():
                pixels = model.to_pixels(model.decode(torch.tensor([z]), label=torch.tensor([k])))[0, 0]
            expected = (pixels * 255).round().to(torch.uint8).numpy()
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)
        status, _, body = served.get("/api/decode?label=3")
        assert status == 400 and json.loads(body)["error"] == "label 3 is out of range: the model has 3 classes"
    finally:
        served.close()


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny BetaVAE trained for two steps on shapes, with its run's config.yaml."""
    root = tmp_path_factory.mktemp("explore_run")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(
            [
                "fit",
                *SHAPES_MODEL,  # the tiny BetaVAE of the CLI tests: LATENT (4) dimensions
                "--data=betavae.data.ShapesDataModule",
                "--data.init_args.num_images=32",
                "--data.init_args.image_size=16",
                "--data.init_args.batch_size=4",
                "--trainer.max_epochs=1",
                "--trainer.limit_train_batches=2",
                "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                "--trainer.logger.save_dir=runs",
                "--trainer.logger.name=explore",
                "--trainer.enable_model_summary=false",
                "--progress_bar.refresh_rate=0",
                "--traversal.every_n_epochs=5",
            ]
        )
    finally:
        os.chdir(cwd)
    return root / "runs" / "explore" / "version_0" / "checkpoints" / "last.ckpt"


def explore_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["explore", *args])
    assert exit_info.value.code == 1
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_explore_names_a_missing_or_unreadable_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    assert explore_error([f"--ckpt_path={missing}"], capsys) == (
        f"betavae explore: error: checkpoint {missing} does not exist"
    )
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint")
    message = explore_error([f"--ckpt_path={notes}"], capsys)
    assert message.startswith(f"betavae explore: error: {notes} is not a readable checkpoint: it is not a PyTorch")


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_explore_says_when_its_port_is_in_use_and_suggests_another(checkpoint, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = explore_error([f"--ckpt_path={checkpoint}", f"--port={port}"], capsys)
    assert message.startswith(f"betavae explore: error: port {port} on 127.0.0.1 is in use")
    assert re.search(r"pass --port \d+ \(free now\), or --port 0 for any free port$", message)


def test_explore_warns_that_a_non_loopback_host_has_no_authentication(checkpoint, capsys):
    model = BetaVAE.load_from_checkpoint(checkpoint, map_location="cpu")
    for host, warned in (("127.0.0.1", False), ("0.0.0.0", True)):
        server = explore_checkpoint(model, tiny_data(), checkpoint, host=host, port=0, num_images=2, serve=False)
        server.server_close()
        out = capsys.readouterr()
        assert ("has no authentication" in out.err) is warned
        assert "explore: open http://" in out.out and f":{server.server_address[1]}/" in out.out


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_explore_serves_the_page_until_ctrl_c(checkpoint):
    """`python -m betavae explore --ckpt_path CKPT` as docs/explorer.md and the README show it, without a browser:
    it prints the model, the active dimensions and the address, serves the page and the API there, and Ctrl-C
    stops it with one line and status 0."""
    process, url, lines = start_explore(checkpoint, drain=False)
    try:
        assert re.fullmatch(
            rf"explore: BetaVAE from {re.escape(str(checkpoint.resolve()))} \(epoch 0\), [0-4] of {LATENT} "
            r"dimensions active\n",
            lines[-2],
        )
        assert re.fullmatch(r"explore: open http://127\.0\.0\.1:\d+/  \(Ctrl-C stops it\)\n", lines[-1])
        with urllib.request.urlopen(url, timeout=60) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with urllib.request.urlopen(url + "api/info", timeout=60) as answer:
            assert len(json.loads(answer.read())["dimensions"]) == LATENT
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=180)  # a loaded machine is slow to stop torch
    assert process.returncode == 0 and rest.strip().splitlines()[-1] == "explore: stopped", rest


# --------------------------------------------------------------------------- a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]


def browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "no Chromium and chromedriver on PATH (Debian: apt-get install -y chromium chromium-driver)"
    return None


def start_explore(checkpoint: Path, drain: bool = True) -> tuple[subprocess.Popen, str, list[str]]:
    """``python -m betavae explore`` on a free port, in its own process; returns it, the printed URL and the lines
    printed until then. ``drain``: read the rest of its output in a thread (else the caller reads it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "betavae", "explore", f"--ckpt_path={checkpoint}", "--port=0", "--images=8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # Ctrl-C as from a terminal: a test run started in the background (`cmd &`, nohup) ignores SIGINT, the
        # child would inherit that, and Python then installs no KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    deadline = time.monotonic() + 600  # a loaded 2-core machine takes minutes to import and measure
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        found = re.search(r"explore: open (http://\S+)", line)
        if found:
            if drain:
                threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
            return process, found.group(1), lines
    process.kill()
    raise AssertionError("explore printed no URL:\n" + "".join(lines))


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_the_page_in_headless_chromium_redraws_as_a_slider_moves(checkpoint, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    process, url, _ = start_explore(checkpoint)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    pixels = (  # the decoded image's pixels, read back from the page itself
        "const img = document.getElementById('decoded'); const c = document.createElement('canvas');"
        "c.width = img.naturalWidth; c.height = img.naturalHeight; const g = c.getContext('2d');"
        "g.drawImage(img, 0, 0); return Array.from(g.getImageData(0, 0, c.width, c.height).data);"
    )
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        assert driver.find_element(By.ID, "error").text == ""
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#active .dim label")]
        assert labels and all(re.match(r"z\d+ · KL \d+\.\d\d", label) for label in labels)
        assert "start: the encoding (μ) of validation image 0" in driver.find_element(By.ID, "start").text
        assert "reconstruction (μ): PSNR" in driver.find_element(By.ID, "scores").text
        before, decodes = (
            driver.execute_script(pixels),
            int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-decodes")),
        )
        assert len(before) == 16 * 16 * 4
        slider = driver.find_element(By.CSS_SELECTOR, "#active input[type=range]")
        slider.send_keys(Keys.END)  # to +3, as a user would with the keyboard
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-decodes")) > decodes)
        wait.until(
            lambda d: (
                d.execute_script("return document.getElementById('decoded').dataset.z").split(",")[
                    int(slider.get_attribute("data-dim"))
                ]
                == "3"
            )
        )
        after = driver.execute_script(pixels)
        assert after != before, "the decoded image did not change when the slider moved"
        assert driver.find_element(By.ID, f"z{slider.get_attribute('data-dim')}-value").text == "+3.00"
        shot = Path(os.environ.get("BETAVAE_EXPLORER_SCREENSHOT", tmp_path / "explorer.png"))
        assert driver.save_screenshot(str(shot)) and Image.open(shot).size[0] > 0
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=30)
