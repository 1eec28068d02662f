"""Any painting in the live mirror: the shipped paintings, the arbitrary-style transformer's
weights route, POST /style, and the page running paintings on one transformer (Chromium)."""

import fnmatch
import http.client
import json
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors

from helpers import IMAGES, ROOT, WEB, canvas_pixels, open_page, photo, random_net
from stylemirror import arbitrary, formats, mirror, registry
from stylemirror.stylize import Options, Stylizer

SHIPPED = ["great_wave", "shipwreck_of_the_minotaur", "the_scream", "udnie"]  # the Great Wave first


@pytest.fixture(scope="module")
def predictor():
    return arbitrary.StylePredictor()  # its own session, not the server's cached one


@pytest.fixture
def bare_url(tmp_path):
    """The mirror with no models of the user's at all."""
    (tmp_path / "none").mkdir()
    srv = mirror.Mirror([tmp_path / "none"]).serve(port=0)
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


def get(url):
    with urllib.request.urlopen(url) as response:
        return response.read()


def post(url, body, headers=None):
    """(status, JSON answer) of POSTing `body` (None: the headers only) to the mirror at url."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.putrequest("POST", parts.path)
    for key, value in ({"Content-Length": str(len(body or b""))} | (headers or {})).items():
        if value is not None:
            conn.putheader(key, value)
    conn.endheaders()
    if body:
        conn.send(body)
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    return response.status, answer


def test_index_lists_the_shipped_paintings_first(bare_url, predictor):
    models = json.loads(get(bare_url + "models/index.json"))["models"]
    assert [m["name"] for m in models] == SHIPPED
    for entry in models:
        assert entry["arch"] == "arbitrary" and entry["thumbnail"] == f"paintings/{entry['name']}.jpg"
        picture = get(bare_url + entry["thumbnail"])
        assert picture == (WEB / entry["thumbnail"]).read_bytes() and len(picture) < 100_000
        expected = predictor(Image.open(WEB / entry["thumbnail"]).convert("RGB"))
        assert np.abs(np.array(entry["style"]) - expected).max() < 1e-4


def test_a_fresh_machine_opens_on_the_great_wave_without_pulling(tmp_path, monkeypatch, capsys):
    """`make mirror` on a fresh clone: no model anywhere, offline; the page's first style (it
    opens on it without ?model=) is the Great Wave, and nothing is downloaded."""
    monkeypatch.chdir(tmp_path)
    srv = mirror.start(port=0, open_browser=False)
    try:
        out = capsys.readouterr().out
        url = f"http://127.0.0.1:{srv.server_address[1]}/"
        assert f"style mirror at {url}  (" in out and "no style model found" not in out
        assert json.loads(get(url + "models/index.json"))["models"][0]["name"] == "great_wave"
        assert not registry.pulled()
    finally:
        srv.shutdown()


def test_a_users_model_keeps_its_name_beside_a_shipped_painting(tmp_path):
    formats.write_ml5(random_net(), tmp_path / "models" / "udnie")
    _, body = mirror.Mirror([tmp_path / "models"]).index()
    names = [m["name"] for m in json.loads(body)["models"]]
    assert names == SHIPPED[:3] + ["udnie-painting", "udnie"]


def test_the_wheel_carries_the_paintings():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["stylemirror"]
    for name in SHIPPED:
        assert any(fnmatch.fnmatch(f"web/paintings/{name}.jpg", p) for p in patterns)
    assert "great_wave.jpg" in (ROOT / "licenses" / "THIRD-PARTY.md").read_text()


def test_the_weights_route_serves_the_transformer(bare_url):
    data = get(bare_url + mirror.WEIGHTS_URL)
    tensors = load_safetensors(data)
    expected = arbitrary.ArbitraryNet.pretrained().state_dict()
    assert sorted(tensors) == sorted(expected)
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert header["__metadata__"]["format"] == mirror.WEIGHTS_FORMAT


def test_posting_a_picture_gives_its_style_vector(bare_url, predictor):
    body = (IMAGES / "the_scream.jpg").read_bytes()
    status, answer = post(bare_url + "style", body, {"Origin": bare_url.rstrip("/")})
    assert status == 200
    expected = predictor(Image.open(IMAGES / "the_scream.jpg").convert("RGB"))
    assert np.abs(np.array(json.loads(answer)["style"]) - expected).max() < 1e-4


def error(answer):
    message = json.loads(answer)["error"]
    assert "\n" not in message
    return message


def test_posting_refuses_what_is_no_picture_or_too_large(bare_url):
    url = bare_url + "style"
    status, answer = post(url, b"not a picture at all")
    assert status == 400 and "not a readable picture" in error(answer)
    status, answer = post(url, b"")
    assert status == 400
    # Refused from its Content-Length, before a byte of the body is read.
    status, answer = post(url, None, {"Content-Length": str(mirror.MAX_STYLE_BYTES + 1)})
    assert status == 413 and "too large" in error(answer)
    status, answer = post(url, None, {"Content-Length": None})
    assert status == 411
    status, answer = post(url, (IMAGES / "udnie.jpg").read_bytes(), {"Origin": "http://example.com"})
    assert status == 403
    # The GET routes are as they were: they refuse POST, and /style is no GET route.
    assert post(bare_url + "models/index.json", b"{}")[0] == 405
    assert post(bare_url + "index.html", b"")[0] == 405
    assert json.loads(get(bare_url + "models/index.json"))["models"][0]["name"] == "great_wave"
    with pytest.raises(urllib.error.HTTPError) as e:
        get(url)
    assert e.value.code == 404


def test_keep_writes_a_painting_file_and_never_replaces_another_file(tmp_path, monkeypatch, predictor):
    monkeypatch.chdir(tmp_path)
    srv = mirror.Mirror([tmp_path / "models"]).serve(port=0)
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    try:
        vector = predictor(Image.open(IMAGES / "the_scream.jpg").convert("RGB"))
        keep = lambda name, style=vector.tolist(): post(url + "keep", json.dumps({"name": name, "style": style}).encode())  # noqa: E731
        status, answer = keep("my scream")
        assert status == 200 and json.loads(answer)["file"] == str(tmp_path / "models" / "my scream.safetensors")
        net = formats.read_model(tmp_path / "models" / "my scream.safetensors")
        assert torch.equal(net.style, torch.from_numpy(vector)) and net.style_names == ["my scream"]
        listed = {m["name"]: m for m in json.loads(get(url + "models/index.json"))["models"]}
        assert listed["my-scream"]["arch"] == "arbitrary" and listed["my-scream"]["url"] == "models/my-scream.safetensors"
        assert keep("my scream", (vector * 2).tolist())[0] == 200  # an earlier painting file: replaced
        # Anything else is left alone: another model, a plain file.
        formats.save_safetensors(random_net(), tmp_path / "models" / "trained.safetensors")
        (tmp_path / "models" / "notes.safetensors").write_text("mine")
        for name in ("trained", "notes"):
            before = (tmp_path / "models" / f"{name}.safetensors").read_bytes()
            status, answer = keep(name)
            assert status == 409 and "refusing to replace" in error(answer)
            assert (tmp_path / "models" / f"{name}.safetensors").read_bytes() == before
        for name in ("../escape", ".hidden", ""):
            assert keep(name)[0] == 400
        assert keep("short", [1.0] * 99)[0] == 400 and keep("nan", [float("nan")] * 100)[0] == 400
        assert post(url + "keep", b"not json")[0] == 400
        assert not (tmp_path / "escape.safetensors").exists()
    finally:
        srv.shutdown()


# ---------------------------------------------------------------- the page

def stop_and_read(page):
    """The camera loop stopped after a whole frame: (camera frame, its stylized output)."""
    page.evaluate("window.mirror.mode = 'paused'")
    page.wait_for_function("!window.mirror.loopRunning", timeout=60000)
    return canvas_pixels(page, "camera-view"), canvas_pixels(page, "output")


def resume(page, frames=2):
    start = page.evaluate("window.mirror.frames")
    page.evaluate("window.mirror.mode = 'camera'; document.getElementById('camera-button').click()")
    page.wait_for_function(f"window.mirror.frames >= {start + frames}", timeout=120000)


def stylizer(vector):
    return Stylizer(arbitrary.ArbitraryNet.pretrained().with_style(vector), options=Options(edge_pad=0))


def test_the_page_opens_on_the_great_wave_and_paints_as_stylize_does(camera_browser, mirror_url, predictor):
    page = open_page(camera_browser, f"{mirror_url}?backend=wasm&size=160x120&steady=off")
    page.wait_for_function("window.mirror.frames >= 3", timeout=120000)
    assert page.evaluate("window.mirror.model") == "great_wave"
    assert page.evaluate("document.getElementById('style-thumbnail').getAttribute('src')") == "paintings/great_wave.jpg"
    camera, output = stop_and_read(page)
    vector = predictor(Image.open(WEB / "paintings" / "great_wave.jpg").convert("RGB"))
    ours = np.asarray(stylizer(vector).picture(Image.fromarray(camera)))
    diff = np.abs(output.astype(int) - ours.astype(int))
    assert diff.max() <= 3, f"max difference {diff.max()} levels"
    assert np.abs(output.astype(int) - camera.astype(int)).mean() > 20  # painted, not the camera
    assert not page.errors
    page.close()


DROP = """async (url) => {
  const blob = await (await fetch(url)).blob();
  const data = new DataTransfer();
  data.items.add(new File([blob], 'minotaur.jpg', { type: 'image/jpeg' }));
  document.getElementById('stage').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def test_switching_and_dropping_paintings_keeps_one_transformer(camera_browser, mirror_url, predictor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "keep this style" writes into ./models
    requests = []
    listen = lambda request: requests.append(request.url)  # noqa: E731
    camera_browser.on("request", listen)
    page = open_page(camera_browser, f"{mirror_url}?backend=wasm&size=160x120&steady=off&model=great_wave")
    page.wait_for_function("window.mirror.frames >= 2", timeout=120000)
    camera, wave = stop_and_read(page)
    resume(page)
    tensors = page.evaluate("tf.memory().numTensors")
    for name in ["the_scream", "udnie-painting", "great_wave", "the_scream"]:
        assert page.evaluate(f"window.mirror.useModel('{name}')")
        resume(page)
        assert page.evaluate("tf.memory().numTensors") == tensors, name
    camera2, scream = stop_and_read(page)
    vector = predictor(Image.open(WEB / "paintings" / "the_scream.jpg").convert("RGB"))
    ours = np.asarray(stylizer(vector).picture(Image.fromarray(camera2)))
    assert np.abs(scream.astype(int) - ours.astype(int)).max() <= 3
    resume(page)
    # A painting dropped on the page with "use as style": its vector from POST /style.
    page.check("#use-as-style")
    frames = page.evaluate("window.mirror.frames")
    started = time.monotonic()
    page.evaluate(DROP, "paintings/shipwreck_of_the_minotaur.jpg")
    page.wait_for_function(f"window.mirror.model === 'minotaur' && window.mirror.frames > {frames + 1}", timeout=120000)
    print(f"\ndropped painting to its second frame: {time.monotonic() - started:.2f} s")
    expected = predictor(Image.open(WEB / "paintings" / "shipwreck_of_the_minotaur.jpg").convert("RGB"))
    assert np.abs(np.array(page.evaluate("Array.from(window.mirror.net.vector)")) - expected).max() < 1e-4
    assert page.evaluate("window.mirror.mode") == "camera" and page.evaluate("tf.memory().numTensors") == tensors
    camera3, minotaur = stop_and_read(page)
    ours = np.asarray(stylizer(expected).picture(Image.fromarray(camera3)))
    assert np.abs(minotaur.astype(int) - ours.astype(int)).max() <= 3
    other = np.asarray(stylizer(vector).picture(Image.fromarray(camera3)))  # the Scream on that frame
    assert np.abs(minotaur.astype(int) - other.astype(int)).mean() > 10
    # Kept: a painting's model file in ./models.
    page.click("#keep-style")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('Kept as')", timeout=30000)
    kept = formats.read_model(tmp_path / "models" / "minotaur.safetensors")
    assert np.abs(kept.style.numpy() - expected).max() < 1e-4
    # One transformer all along, fetched once.
    assert page.evaluate("Painting.counts.loads") == 1
    camera_browser.remove_listener("request", listen)
    assert sum(u.endswith(mirror.WEIGHTS_URL) for u in requests) == 1
    resume(page, 6)
    print(f"frames/s with a painting at 160x120: {page.locator('#fps').inner_text()}")
    assert not page.errors
    page.close()


def test_a_picture_in_a_paintings_style_matches_stylize(browser, mirror_url, tmp_path, predictor):
    """Picture mode: the page's edge pad (index.json's) and pad multiple, as `stylize` does it."""
    picture = photo((61, 45))
    picture.save(tmp_path / "picture.png")
    page = open_page(browser, f"{mirror_url}?model=the_scream&camera=off&backend=wasm")
    page.set_input_files("#image-input", str(tmp_path / "picture.png"))
    page.wait_for_function("document.body.dataset.state === 'image-done'", timeout=90000)
    vector = predictor(Image.open(WEB / "paintings" / "the_scream.jpg").convert("RGB"))
    ours = np.asarray(Stylizer(arbitrary.ArbitraryNet.pretrained().with_style(vector)).picture(picture))
    diff = np.abs(canvas_pixels(page, "output").astype(int) - ours.astype(int))
    assert diff.max() <= 3, f"max difference {diff.max()} levels"
    assert not page.errors
    page.close()


def test_only_this_machine_may_post():
    from stylemirror.server import from_this_machine

    assert all(map(from_this_machine, ["127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1"]))
    assert not any(map(from_this_machine, ["192.168.1.5", "10.0.0.2", "::ffff:10.0.0.2", "fe80::1", "bogus"]))
