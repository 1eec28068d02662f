"""The mirror page on phones and tablets: emulated devices (viewport, touch, device scale) on
`mirror --lan`'s HTTPS URL with the token, and the desktop page left as it was."""

import pytest

from helpers import ARTIFACTS, fake_camera, launch, open_page, photo
from stylemirror.bench import write_y4m

# Records what the page asks getUserMedia for (the constraints of each call).
RECORD_CAMERA = """
window.cameraAsks = [];
const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.cameraAsks.push(JSON.parse(JSON.stringify(constraints)));
  return ask(constraints);
};
"""


@pytest.fixture
def device(playwright, tmp_path):
    """open(name) -> a page of the phone mirror on the emulated device `name` (Playwright's)."""
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, photo((320, 240)))
    contexts = []

    def open_on(name, url):
        emulated = {k: v for k, v in playwright.devices[name].items() if k != "default_browser_type"}
        context = launch(playwright, tmp_path / f"profile-{len(contexts)}", fake_camera(y4m),
                         ignore_https_errors=True, **emulated)
        contexts.append(context)
        context.add_init_script(RECORD_CAMERA)
        page = open_page(context, url)
        page.wait_for_function("window.mirror.frames >= 2", timeout=120000)
        return page

    yield open_on
    for context in contexts:
        context.close()


def output_cover(page):
    """The share of the viewport the stylized picture covers, and whether its box is filled."""
    box = page.locator("#output").bounding_box()
    w, h = page.evaluate("[innerWidth, innerHeight]")
    seen_w = min(box["x"] + box["width"], w) - max(box["x"], 0)
    seen_h = min(box["y"] + box["height"], h) - max(box["y"], 0)
    fit = page.evaluate("getComputedStyle(document.getElementById('output')).objectFit")
    return seen_w * seen_h / (w * h), fit


def swipe(page, dx, y=None):
    """A finger across the screen, through Chromium's touch input (real TouchEvents)."""
    w, h = page.evaluate("[innerWidth, innerHeight]")
    x0, y = w / 2 - dx / 2, y or h / 2
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y}]})
    for i in range(1, 6):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x0 + dx * i / 5, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


@pytest.mark.parametrize("name", ["Pixel 7", "Pixel 7 landscape", "iPad Pro 11", "iPad Pro 11 landscape"])
def test_the_stylized_picture_fills_the_screen(device, lan_mirror, name):
    """Portrait and landscape, phone and tablet: the output covers the viewport, alone (no
    camera frame beside it), the controls folded away."""
    port, token = lan_mirror
    page = device(name, f"https://127.0.0.1:{port}/?token={token}&model=lite&size=160x120")
    share, fit = output_cover(page)
    assert share > 0.97 and fit == "cover", (share, fit)
    assert not page.locator("#camera-view").is_visible() and not page.locator("header").is_visible()
    assert page.locator("#fold-button").is_visible() and page.locator("#flip-camera").is_visible()
    if name == "Pixel 7":
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "room-phone.png"))  # for a person to look at
    assert not page.errors


def test_swipes_change_the_style_and_a_tap_takes_a_snapshot(device, lan_mirror):
    port, token = lan_mirror
    page = device("Pixel 7", f"https://127.0.0.1:{port}/?token={token}&model=lite&size=160x120")
    names = page.evaluate("window.mirror.models.map((m) => m.name)")
    before = names[names.index("lite") - 1]
    swipe(page, 200)  # to the right: the previous style
    page.wait_for_function(f"window.mirror.model === '{before}' && document.body.dataset.state === 'ready'",
                           timeout=60000)
    swipe(page, -200)  # to the left: the next one
    page.wait_for_function("window.mirror.model === 'lite' && document.body.dataset.state === 'ready'", timeout=60000)
    swipe(page, 20)  # too short to be a swipe (and too long to be a tap)
    with page.expect_download() as snapshot:
        page.touchscreen.tap(200, 400)
    assert snapshot.value.suggested_filename.startswith("stylemirror-lite-")
    assert snapshot.value.suggested_filename.endswith(".png")
    assert page.evaluate("window.mirror.model") == "lite" and not page.errors


def test_the_controls_open_with_the_fold_button(device, lan_mirror):
    port, token = lan_mirror
    page = device("Pixel 7", f"https://127.0.0.1:{port}/?token={token}&model=lite&size=160x120")
    assert not page.locator("#model-select").is_visible()
    page.tap("#fold-button")
    assert page.locator("#model-select").is_visible() and page.locator("footer").is_visible()
    assert page.get_attribute("#fold-button", "aria-expanded") == "true"
    page.tap("#fold-button")
    assert not page.locator("#model-select").is_visible()


def test_the_flip_button_asks_for_the_other_camera(device, lan_mirror):
    port, token = lan_mirror
    page = device("Pixel 7", f"https://127.0.0.1:{port}/?token={token}&model=lite&size=160x120")
    facing = lambda: [ask["video"].get("facingMode") for ask in page.evaluate("window.cameraAsks")]
    assert facing() == [{"ideal": "user"}]
    page.tap("#flip-camera")
    page.wait_for_function("window.cameraAsks.length === 2")
    assert facing()[1] == {"ideal": "environment"}
    frames = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {frames + 2}", timeout=120000)  # the new camera's
    page.tap("#flip-camera")
    page.wait_for_function("window.cameraAsks.length === 3")
    assert facing()[2] == {"ideal": "user"} and not page.errors


def test_the_desktop_page_keeps_its_layout(camera_browser, mirror_url):
    """No touch: side by side, the controls in view, no fold or flip button (one camera)."""
    page = open_page(camera_browser, f"{mirror_url}?model=lite&backend=wasm&size=160x120")
    page.wait_for_function("window.mirror.frames >= 1", timeout=120000)
    assert page.locator("#camera-view").is_visible() and page.locator("#model-select").is_visible()
    assert not page.locator("#fold-button").is_visible() and not page.locator("#flip-camera").is_visible()
    share, fit = output_cover(page)
    assert share < 0.5 and fit == "contain"
    page.close()
