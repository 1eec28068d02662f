"""The mirror page's kiosk mode (?kiosk, `mirror --kiosk`): the stylized camera alone, the styles
in turn, and a page that mends itself (camera gone, server restarting) and does not grow."""

import pytest
import torch

from helpers import fake_camera, launch, open_page, photo, random_net, stylemirror
from stylemirror import formats, lan, mirror
from stylemirror.bench import write_y4m
from stylemirror.network import TransformNet

# getUserMedia fails the first `window.cameraFailures` times (a camera not plugged in yet);
# each call's time is kept.
FLAKY_CAMERA = """
window.cameraCalls = [];
const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.cameraCalls.push(performance.now());
  if (window.cameraCalls.length <= (window.cameraFailures ?? 0)) {
    return Promise.reject(new DOMException('no camera yet', 'NotReadableError'));
  }
  return ask(constraints);
};
"""


KIOSK = "?kiosk&backend=wasm&size=160x120"


@pytest.fixture
def models(tmp_path):
    """This module's models (and so `mirror_url`'s): two lite networks, `lite` then `lite2`,
    listed after the shipped paintings."""
    folder = tmp_path / "models"
    formats.save_safetensors(random_net(seed=7, arch="lite"), folder / "lite.safetensors")
    formats.save_safetensors(random_net(seed=8, arch="lite"), folder / "lite2.safetensors")
    return folder


@pytest.fixture
def kiosk_browser(playwright, tmp_path):
    """Chromium with a fake camera, the flaky getUserMedia above, and gc() for the page."""
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, photo((320, 240)), fps=30)  # at 10 fps the camera, not the page, sets the soak's pace
    context = launch(playwright, tmp_path / "profile",
                     fake_camera(y4m) + ["--js-flags=--expose-gc", "--enable-precise-memory-info"])
    context.add_init_script(FLAKY_CAMERA)
    yield context
    context.close()


def frames_go_on(page, more=3, timeout=120000):
    start = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {start + more}", timeout=timeout)


def label(page):
    return page.evaluate("""[document.querySelector('#kiosk-label span').textContent,
                             document.querySelector('#kiosk-label img').hidden ? null
                               : new URL(document.querySelector('#kiosk-label img').src).pathname]""")


def test_the_kiosk_shows_the_camera_alone_and_keys_and_clicks_turn_the_styles(kiosk_browser, mirror_url):
    page = open_page(kiosk_browser, f"{mirror_url}{KIOSK}&model=great_wave&cycle=0")
    frames_go_on(page, 2)
    for hidden in ("header", "footer", "#fold-button", "#flip-camera", "#camera-view", "#message"):
        assert not page.locator(hidden).is_visible(), hidden
    box = page.locator("#output").bounding_box()
    assert box["width"] * box["height"] >= 0.97 * page.evaluate("innerWidth * innerHeight")
    assert page.evaluate("getComputedStyle(document.getElementById('output')).cursor") == "none"
    assert page.locator("#kiosk-label").is_visible() and label(page) == ["great wave", "/paintings/great_wave.jpg"]
    assert page.evaluate("document.querySelector('#kiosk-label img').naturalWidth") > 0
    page.keyboard.press("ArrowRight")
    page.wait_for_function("window.mirror.model === 'shipwreck_of_the_minotaur'", timeout=60000)
    assert label(page) == ["shipwreck of the minotaur", "/paintings/shipwreck_of_the_minotaur.jpg"]
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # two steps from great_wave: around to the end of the list
    page.wait_for_function("window.mirror.model === 'lite2'", timeout=60000)
    assert label(page) == ["lite2", None]  # a model of the user's has no picture
    page.mouse.click(100, 100)
    page.wait_for_function("window.mirror.model === 'great_wave'", timeout=60000)
    frames_go_on(page)
    assert not page.errors
    page.close()


def test_the_kiosk_cycles_the_styles(kiosk_browser, mirror_url):
    page = open_page(kiosk_browser, f"{mirror_url}{KIOSK}&model=lite&cycle=1")
    page.wait_for_function("window.mirror.model === 'great_wave'", timeout=60000)  # lite2, then around
    page.wait_for_function("window.mirror.model === 'shipwreck_of_the_minotaur'", timeout=60000)
    assert not page.errors
    page.close()


def test_the_kiosk_asks_for_a_failing_or_ended_camera_again(kiosk_browser, mirror_url):
    """getUserMedia fails three times (waits of 1, 2 and 4 s follow), then the track ends: the
    frames come back each time, without a reload."""
    page = kiosk_browser.new_page()
    page.add_init_script("window.cameraFailures = 3")
    page.goto(f"{mirror_url}{KIOSK}&model=lite&cycle=0")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    page.wait_for_function("window.mirror.frames >= 2", timeout=120000)
    calls = page.evaluate("window.cameraCalls")
    waits = [b - a for a, b in zip(calls, calls[1:])]
    assert len(calls) == 4 and [round(w / 1000) for w in waits] == [1, 2, 4], waits
    page.evaluate("""() => {
      const [track] = window.mirror.stream.getVideoTracks();
      track.stop();
      track.dispatchEvent(new Event('ended'));
    }""")
    page.wait_for_function("window.cameraCalls.length === 5", timeout=10000)
    frames_go_on(page)
    assert page.evaluate("[window.loadedOnce, window.mirror.stream.getVideoTracks()[0].readyState]") == [True, "live"]
    page.close()


def test_the_kiosk_keeps_the_last_style_while_the_server_restarts(kiosk_browser, models):
    srv = mirror.Mirror([models]).serve(port=0)
    port = srv.server_address[1]
    page = open_page(kiosk_browser, f"http://127.0.0.1:{port}/{KIOSK}&model=lite&cycle=0")
    frames_go_on(page, 2)
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    srv.shutdown()
    srv.server_close()
    try:
        page.keyboard.press("ArrowRight")  # lite2: its file cannot be fetched now
        for _ in range(20):
            if len(failed) >= 2:
                break
            frames_go_on(page, 1)
        assert len(failed) >= 2 and all(url.endswith("/models/lite2.safetensors") for url in failed), failed
        frames_go_on(page)
        assert page.evaluate("window.mirror.model") == "lite"  # the last style, still running
    finally:
        srv = mirror.Mirror([models]).serve(port=port)  # the server back, on the same port
    try:
        page.wait_for_function("window.mirror.model === 'lite2'", timeout=60000)
        frames_go_on(page)
        assert label(page) == ["lite2", None]
    finally:
        page.close()
        srv.shutdown()


def tiny_net(seed):
    """The lite network's layers at a quarter of its channels, with one residual block; its
    norms random as random_net's."""
    torch.manual_seed(seed)
    net = TransformNet(widths=(4, 8, 16), blocks=1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("scale"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("shift"):
                p.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture
def tiny_mirror_url(tmp_path):
    """The mirror serving two tiny networks, `tiny` then `tiny2`, after the shipped paintings."""
    folder = tmp_path / "tiny"
    formats.save_safetensors(tiny_net(seed=7), folder / "tiny.safetensors")
    formats.save_safetensors(tiny_net(seed=8), folder / "tiny2.safetensors")
    srv = mirror.Mirror([folder]).serve(port=0)
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


@pytest.mark.slow
def test_the_kiosk_runs_2000_frames_without_growing(kiosk_browser, tiny_mirror_url):
    """2,000 frames at 160x120, turning between two styles: after garbage collection the same
    tensors throughout, and no more JS heap in the last 1,000 frames than the frames' own churn
    (a leak of 256 bytes a frame would pass the slack). The networks are tiny (tiny_net): the
    page runs every layer kind of the lite network's, its frame loop and its style turns as for
    any network; a leak per layer or per frame shows as well."""
    page = open_page(kiosk_browser, f"{tiny_mirror_url}{KIOSK}&model=tiny&cycle=0")
    measure = "(() => { gc(); gc(); return [tf.memory().numTensors, performance.memory.usedJSHeapSize]; })()"
    frames_go_on(page, 100, timeout=300000)
    seen = [page.evaluate(measure)]
    start = page.evaluate("window.mirror.frames")
    for turn in range(4):  # tiny2 and back, twice
        page.keyboard.press("ArrowRight" if turn % 2 == 0 else "ArrowLeft")
        page.wait_for_function(f"window.mirror.model === '{'tiny2' if turn % 2 == 0 else 'tiny'}'", timeout=60000)
        page.wait_for_function(f"window.mirror.frames >= {start + 500 * (turn + 1)}", timeout=600000)
        seen.append(page.evaluate(measure))
    print(f"over {page.evaluate('window.mirror.frames') - start} frames, tensors and JS heap (MB) at each turn:",
          [(tensors, round(heap / 1e6, 3)) for tensors, heap in seen])
    assert {tensors for tensors, _ in seen} == {seen[0][0]}
    (_, early), (_, middle), (_, late) = seen[0], seen[2], seen[4]  # each on `tiny`
    assert late < early * 1.05 + 1e6 and late < middle + 256e3, seen
    assert not page.errors
    page.close()


def test_mirror_kiosk_prints_the_kiosk_url(models, config, capsys, monkeypatch):
    for kwargs, query in (({}, "?kiosk"), ({"lan": True}, "?token={token}&kiosk")):
        srv = mirror.start([models], host="127.0.0.1", port=0, open_browser=False, kiosk=True, **kwargs)
        srv.shutdown()
        scheme = "https" if kwargs else "http"
        token = lan.access_token() if kwargs else None
        assert f"{scheme}://127.0.0.1:{srv.server_address[1]}/{query.format(token=token)}  " in capsys.readouterr().out
    ran = {}
    monkeypatch.setattr(mirror, "run", lambda *args, **kwargs: ran.update(kwargs))
    assert stylemirror("mirror", "--kiosk", "--no-browser").returncode == 0 and ran["kiosk"] is True
    assert stylemirror("mirror", "--no-browser").returncode == 0 and ran["kiosk"] is False
