"""Fixtures every test module may use; plain helpers are in helpers.py.

Tests that drive Chromium (through the `playwright` fixture) are marked `browser` here, so
`make test-quick` (-m "not slow and not browser") can leave them out."""

import shutil

import pytest
from PIL import Image

from helpers import CHROMIUM, ML5_MODELS, WEB, fake_camera, launch, make_vgg_mat, photo, random_net
from stylemirror import formats, lan, mirror, server
from stylemirror.bench import write_y4m

SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "playwright" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache or the network's model host."""
    monkeypatch.setenv("STYLEMIRROR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLEMIRROR_MODELS_URL", "http://127.0.0.1:9/unreachable")


# ---------------------------------------------------------------- the browser

@pytest.fixture(scope="session")
def playwright():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`make test` installs Debian's chromium where apt-get works)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright, tmp_path_factory):
    context = launch(playwright, tmp_path_factory.mktemp("profile"))
    yield context
    context.close()


@pytest.fixture(scope="module")
def camera_browser(playwright, tmp_path_factory):
    """Chromium whose fake camera shows a photo."""
    y4m = tmp_path_factory.mktemp("camera") / "camera.y4m"
    write_y4m(y4m, photo((320, 240)))
    context = launch(playwright, tmp_path_factory.mktemp("profile"), fake_camera(y4m))
    yield context
    context.close()


@pytest.fixture
def static_server(tmp_path):
    """Serves web/ at / and `tmp_path` at /work/ on 127.0.0.1."""
    srv = server.serve({"/": WEB, "/work": tmp_path})
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


# ---------------------------------------------------------------- the mirror

@pytest.fixture
def models(tmp_path):
    """A models folder: two ml5 folders exported by our own code, ml5's published udnie where
    the shared folder has it, and two in the mirror's own format: a training run's
    --model-dir (standard network) and a lite network's file."""
    folder = tmp_path / "models"
    formats.write_ml5(random_net(seed=4), folder / "ours")
    formats.write_ml5(random_net(seed=5), folder / "other")
    formats.write_ml5(random_net(seed=6), folder / "run" / "ml5")
    formats.save_safetensors(random_net(seed=6), folder / "run" / "model.safetensors")
    formats.save_safetensors(random_net(seed=7, arch="lite"), folder / "lite.safetensors")
    if (ML5_MODELS / "udnie" / "manifest.json").exists():
        shutil.copytree(ML5_MODELS / "udnie", folder / "udnie")
    return folder


@pytest.fixture
def mirror_url(models):
    """The mirror serving `models`, on a free port."""
    srv = mirror.Mirror([models]).serve(port=0)
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A config folder of the test's own (`mirror --lan`'s certificate and token)."""
    monkeypatch.setenv("STYLEMIRROR_CONFIG", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture
def lan_mirror(config, models):
    """`mirror --lan` serving `models` on 127.0.0.1 (HTTPS and the token): (port, token)."""
    srv = mirror.start([models], host="127.0.0.1", port=0, open_browser=False, lan=True)
    yield srv.server_address[1], lan.access_token()
    srv.shutdown()


# ---------------------------------------------------------------- training

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Training pictures (real photos from scikit-image, one broken file), a style picture
    and a generated VGG19 .mat with the original's structure."""
    import skimage.data
    root = tmp_path_factory.mktemp("train")
    (root / "photos" / "nested").mkdir(parents=True)
    for i, name in enumerate(SKIMAGE_PHOTOS):
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        image.thumbnail((96, 96))
        image.save(root / "photos" / ("nested" if i % 2 else "") / f"{name}.jpg")
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "photos" / "readme.txt").write_text("not a picture")
    style = Image.open(root / "photos" / "astronaut.jpg").rotate(90).filter(__import__("PIL.ImageFilter").ImageFilter.FIND_EDGES)
    style.save(root / "style.png")
    photo((40, 30)).save(root / "test.png")
    make_vgg_mat(root / "vgg.mat", upto="conv3_1")
    return root
