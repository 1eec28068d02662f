"""The style mirror: its server, and its page in headless Chromium (Playwright)."""

import http.client
import json
import threading

import numpy as np
import pytest

from helpers import ARTIFACTS, canvas_pixels, ml5_model, open_page, photo, random_net
from stylemirror import formats, mirror, registry, server
from stylemirror.errors import UserError
from stylemirror.stylize import Stylizer


def message(page):
    return page.locator("#message").inner_text() if page.locator("#message").is_visible() else ""


MODEL_PATHS = {"udnie": "udnie", "ours": "ours", "run": "run/model.safetensors", "lite": "lite.safetensors"}


@pytest.mark.parametrize("model", list(MODEL_PATHS))
def test_picture_mode_matches_stylize(browser, mirror_url, models, tmp_path, model):
    """ml5 folders and the mirror's own format (standard and lite networks) give the page
    the picture `stylize` gives."""
    if not (models / MODEL_PATHS[model]).exists():
        ml5_model(model)  # skips, saying why
    picture = photo((61, 45))
    picture.save(tmp_path / "picture.png")
    page = open_page(browser, f"{mirror_url}?model={model}&camera=off&backend=wasm")
    assert page.evaluate("window.mirror.backend") == "wasm" and page.evaluate("window.mirror.model") == model
    page.set_input_files("#image-input", str(tmp_path / "picture.png"))
    page.wait_for_function("document.body.dataset.state === 'image-done'", timeout=90000)
    pixels = canvas_pixels(page, "output")
    assert page.evaluate("[document.getElementById('output').width, document.getElementById('output').height]") == [61, 45]
    ours = np.asarray(Stylizer(formats.read_model(models / MODEL_PATHS[model])).picture(picture))
    diff = np.abs(pixels.astype(int) - ours.astype(int))
    assert diff.max() <= 3, f"max difference {diff.max()} levels"
    assert ours.std() > 5 and not page.errors
    assert ("(lite, " in page.locator("#model-info").inner_text()) == (model == "lite")
    # The link to the same model in ml5.js only where ml5.js can load it.
    link = page.locator("#ml5-link a")
    assert link.is_visible() == (model in ("udnie", "ours"))
    assert link.get_attribute("href") == f"examples/ml5/?model={model}"
    page.close()


def test_camera_frames_flow_fps_shows_and_memory_stays_flat(camera_browser, mirror_url, models):
    model = "udnie" if (models / "udnie").exists() else "ours"  # a real style makes a better screenshot
    page = open_page(camera_browser, f"{mirror_url}?model={model}&backend=wasm&size=160x120")
    page.wait_for_function("window.mirror.frames >= 5", timeout=120000)
    tensors = page.evaluate("tf.memory().numTensors")
    start = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {start + 50}", timeout=300000)
    assert page.evaluate("tf.memory().numTensors") == tensors
    # The camera goes through StyleNet.steady by default; unticked, its frame is dropped.
    assert page.evaluate("window.mirror.steadyFrame.shape") == [120, 160, 3]
    page.uncheck("#steady")
    start = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {start + 3}", timeout=120000)
    assert page.evaluate("[window.mirror.steadyFrame, tf.memory().numTensors]") == [None, tensors - 1]
    fps = float(page.locator("#fps").inner_text().split()[0])
    assert fps > 0
    # Frames come from ImageCapture: no <video> plays.
    assert page.evaluate("[!!window.mirror.capture, document.getElementById('camera').srcObject]") == [True, None]
    # The stylized frame beside the camera frame it came from, neither blank.
    output, camera = canvas_pixels(page, "output"), canvas_pixels(page, "camera-view")
    assert output.shape == camera.shape == (120, 160, 3)
    assert output.std() > 10 and camera.std() > 10
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "mirror.png"))  # for a person to look at
    assert not page.errors
    page.close()


def test_the_page_steadies_frames_as_stylize_does(browser, mirror_url):
    """StyleNet.steady against stylize.Steadier on frames that change by less than noise,
    by something between, and by a movement, in turns."""
    from stylemirror.stylize import Steadier

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)]
    for change in (3, 10, 40, 2, 14, 90, 5):
        step = rng.integers(-change, change + 1, (6, 7, 3))
        frames.append(np.clip(frames[-1] + step, 0, 255).astype(np.uint8))
    steadier = Steadier()
    expected = []
    for f in frames:
        steadier(f)
        expected.append(steadier.state.copy())
    page = open_page(browser, f"{mirror_url}?camera=off&backend=cpu")
    got = page.evaluate("""(frames) => {
        let state = null;
        return frames.map((f) => {
            const next = StyleNet.steady(state, tf.tensor3d(f, [6, 7, 3], 'int32'), window.mirror.settings.steady);
            if (state) state.dispose();
            state = next;
            return Array.from(state.dataSync());
        });
    }""", [f.flatten().tolist() for f in frames])
    assert np.abs(np.array(got) - np.array([e.flatten() for e in expected])).max() < 1e-3
    page.close()


def test_camera_without_image_capture_plays_the_video(camera_browser, mirror_url):
    """Browsers without ImageCapture (Firefox, Safari) read frames from a playing <video>."""
    page = camera_browser.new_page()
    page.add_init_script("delete window.ImageCapture")
    page.goto(f"{mirror_url}?model=ours&backend=wasm&size=160x120")
    page.wait_for_function("window.mirror.frames >= 3", timeout=120000)
    assert page.evaluate("[window.mirror.capture, document.getElementById('camera').paused]") == [None, False]
    assert canvas_pixels(page, "output").std() > 10 and canvas_pixels(page, "camera-view").std() > 10
    page.close()


def test_index_hands_the_page_what_python_computes_with(mirror_url):
    """The page pads and steadies with Python's own values (index.json), and its scripts come
    with a JavaScript MIME type, which module scripts require."""
    from stylemirror.padding import edge_padding
    from stylemirror.stylize import Options, Steadier
    conn = http.client.HTTPConnection(mirror_url.split("//")[1].rstrip("/"))
    conn.request("GET", "/models/index.json")
    settings = json.loads(conn.getresponse().read())["settings"]
    multiple = settings.pop("pad_multiple")
    assert settings == {"edge_pad": Options.edge_pad,
                        "steady": {"follow": Steadier.FOLLOW, "quiet": Steadier.QUIET, "loud": Steadier.LOUD}}
    # edge_padding rounds every padded size up to that multiple, and adds less than one.
    for size in range(1, 12):
        top, bottom, *_ = edge_padding(size, size, 3)
        assert (size + top + bottom) % multiple == 0 and 0 <= bottom - 3 < multiple
    for script in ("mirror.js", "state.js", "stylenet.js", "watch-worker.js"):
        conn.request("GET", f"/{script}")
        response = conn.getresponse()
        response.read()
        assert response.status == 200 and response.getheader("Content-Type") == "text/javascript", script


def test_wasm_runs_on_every_core(browser, mirror_url):
    """The server isolates the page (COOP/COEP), so TF.js's wasm backend may use threads,
    and the page gives it every logical core (TF.js alone would take half)."""
    page = open_page(browser, f"{mirror_url}?model=ours&camera=off&backend=wasm")
    isolated, threads, cores = page.evaluate("[crossOriginIsolated, window.mirror.threads, navigator.hardwareConcurrency]")
    assert isolated and threads == cores  # and the browser's own core count is back
    if cores > 1:
        assert f"wasm ({cores} threads)" in page.locator("#backend").inner_text()
    page.close()


def test_no_camera_says_so(browser, mirror_url):
    """No fake camera in this browser: a specific message, and picture mode still offered."""
    page = open_page(browser, f"{mirror_url}?model=ours&backend=wasm", until="no-camera")
    text = message(page)
    assert ("No camera found" in text or "Camera permission was denied" in text), text
    assert "stylize a picture" in text
    page.close()


def test_bad_model_name_says_so(browser, mirror_url):
    page = open_page(browser, f"{mirror_url}?model=nope&camera=off&backend=wasm")
    assert 'There is no style named "nope"' in message(page)
    assert "Available: great_wave, shipwreck_of_the_minotaur" in message(page) and ", other, ours" in message(page)
    page.close()


# The server lists no model it cannot read (test_user_data.py); these files go bad after the
# page has the list, so the page's own loaders are what is tested.

def test_unreachable_model_file_says_so(browser, models, mirror_url):
    page = open_page(browser, f"{mirror_url}?model=other&camera=off&backend=wasm")
    (models / "ours" / "Variable_5").unlink()
    page.evaluate("window.mirror.useModel('ours')")
    assert 'Could not load the style "ours": Variable_5: HTTP 404' in message(page)
    page.close()


def test_damaged_model_file_says_so(browser, models, mirror_url):
    page = open_page(browser, f"{mirror_url}?model=other&camera=off&backend=wasm")
    page.evaluate("window.mirror.net.dispose(); window.mirror.net = null")  # only the failed load's tensors, below
    path = models / "lite.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    page.evaluate("window.mirror.useModel('lite')")
    assert 'Could not load the style "lite": lite.safetensors: ' in message(page)
    assert "has the wrong size" in message(page)
    assert page.evaluate("tf.memory().numTensors") == 0
    page.close()


def test_only_stylemirror_safetensors_files_are_models(tmp_path):
    from safetensors.torch import save_file
    import torch
    folder = tmp_path / "models"
    folder.mkdir()
    save_file({"conv1_1": torch.zeros(3)}, str(folder / "vgg.safetensors"))  # someone else's file
    (folder / "broken.safetensors").write_bytes(b"\xff" * 20)
    formats.save_safetensors(random_net(arch="lite"), folder / "mine.safetensors")
    assert list(mirror.find_models([folder])) == ["mine"]


def test_no_models_says_how_to_get_one(browser, tmp_path, monkeypatch):
    """Where the arbitrary-style network is missing, no shipped painting is listed either."""
    def missing(*args):
        raise UserError("the arbitrary-style model arbitrary_predict.onnx is missing")

    monkeypatch.setattr(mirror, "painting_style", missing)
    srv = mirror.Mirror([tmp_path / "empty"]).serve(port=0)
    page = open_page(browser, f"http://127.0.0.1:{srv.server_address[1]}/?backend=wasm", until="no-models")
    assert "stylemirror models pull wave" in message(page) and "stylemirror train" in message(page)
    page.close()
    srv.shutdown()


def test_ml5_example_page_runs_the_same_model(camera_browser, mirror_url):
    page = camera_browser.new_page()
    page.goto(f"{mirror_url}examples/ml5/?model=ours&size=64x48&frames=1")
    # ml5 0.12.2 is slow on SwiftShader WebGL (its CPU backend is wrong): a small frame.
    # Read the status as the first frame arrives: the next ml5 frame blocks the page again.
    status = page.wait_for_function("window.ml5Frames >= 1 && document.getElementById('status').textContent",
                                    timeout=180000, polling=1000).json_value()
    assert "ours loaded (ml5 backend: webgl)" in status
    page.close()


def test_index_lists_models(mirror_url, models):
    conn = http.client.HTTPConnection(mirror_url.split("//")[1].rstrip("/"))
    conn.request("GET", "/models/index.json")
    index = json.loads(conn.getresponse().read())
    names = [m["name"] for m in index["models"]]
    udnie = (models / "udnie").exists()  # a user's model keeps its name: the shipped painting's yields
    assert names[:4] == ["great_wave", "shipwreck_of_the_minotaur", "the_scream", "udnie-painting" if udnie else "udnie"]
    assert names[4:] == ["other", "ours", "run"] + ["udnie"] * udnie + ["lite"]
    ml5_folders = [m for m in index["models"] if m["name"] in ("other", "ours", "udnie")]
    assert all(m["format"] == "ml5" and m["size"] > 6e6 and m["url"] == f"models/{m['name']}/" for m in ml5_folders)
    # A training run's folder is listed once, by its single file (ml5/ is the same model).
    by_name = {m["name"]: m for m in index["models"]}
    assert by_name["run"]["format"] == "safetensors" and by_name["run"]["url"] == "models/run.safetensors"
    assert by_name["lite"]["size"] == (models / "lite.safetensors").stat().st_size < 2e6
    assert by_name["lite"]["arch"] == "lite" and by_name["run"]["arch"] == by_name["ours"]["arch"] == "standard"
    conn.request("GET", "/models/lite.safetensors")
    assert conn.getresponse().read() == (models / "lite.safetensors").read_bytes()


TRAVERSALS = ["/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/models/ours/..%2f..%2f..%2f..%2fetc%2fpasswd",
              "/models/ours/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/%252e%252e/%252e%252e/etc/passwd",
              "/node_modules/../../pyproject.toml", "/..\\..\\pyproject.toml", "/models/../../pyproject.toml",
              "//etc/passwd", "/models/ours/%00manifest.json", "/node_modules/", "/models/ours/../../../Makefile",
              "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_is_refused(mirror_url, path):
    conn = http.client.HTTPConnection(mirror_url.split("//")[1].rstrip("/"))
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    assert response.status == 404 and b"root:" not in body and b"[project]" not in body


def test_resolve_stays_inside_mounts(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.txt").write_text("a")
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "site" / "link.txt").symlink_to(tmp_path / "secret.txt")
    mounts = {"/": tmp_path / "site"}
    assert server.resolve(mounts, "/a.txt") == (tmp_path / "site" / "a.txt").resolve()
    for bad in ["/link.txt", "/../secret.txt", "/%2e%2e/secret.txt", "/", "/a.txt/.."]:
        assert server.resolve(mounts, bad) is None, bad


def test_binds_to_localhost_by_default(models):
    srv = mirror.Mirror([models]).serve(port=0)
    assert srv.server_address[0] == "127.0.0.1"
    srv.shutdown()
    from stylemirror.cli import build_parser, mirror_host
    assert mirror_host(build_parser().parse_args(["mirror"])) == "127.0.0.1"
    assert mirror_host(build_parser().parse_args(["mirror", "--lan"])) == "0.0.0.0"


def test_survives_disconnects_and_50_concurrent_requests(mirror_url):
    import socket
    host, port = mirror_url.split("//")[1].rstrip("/").split(":")
    for _ in range(5):  # ask for a 1 MB file and hang up at once
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /models/ours/Variable_30 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    results = []

    def fetch():
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/models/ours/Variable_30")
        results.append(len(conn.getresponse().read()))
    threads = [threading.Thread(target=fetch) for _ in range(50)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == [3 * 3 * 128 * 128 * 4] * 50


def test_fresh_machine_pulls_a_model_first(tmp_path, monkeypatch):
    host = tmp_path / "host"
    formats.write_ml5(random_net(seed=1), host / "wave")
    srv = server.serve({"/styles": host})
    monkeypatch.setenv("STYLEMIRROR_MODELS_URL", f"http://127.0.0.1:{srv.server_address[1]}/styles")
    folders = mirror.model_folders([])
    assert mirror.ensure_a_model(folders) is None
    assert list(mirror.find_models(folders)) == ["wave"]
    srv.shutdown()


def test_offline_fresh_machine_explains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    note = mirror.ensure_a_model(mirror.model_folders([]))
    assert "no style model found" in note and "stylemirror models pull wave" in note
    assert not registry.pulled()


def test_training_model_dirs_are_found(tmp_path):
    formats.write_ml5(random_net(), tmp_path / "runs" / "my style" / "ml5")
    assert list(mirror.find_models([tmp_path / "runs"])) == ["my-style"]
