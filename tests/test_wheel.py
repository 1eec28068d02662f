"""The wheel `make wheel` builds: it holds the whole thing, the mirror page included, and every
command works when it is installed in a fresh virtual environment, away from the checkout."""

import http.client
import json
import os
import re
import select
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, WEB, fake_camera, launch, make_vgg_mat, photo, random_net
from stylemirror import __version__, formats
from stylemirror.bench import write_y4m
from stylemirror.stylize import Options, Stylizer

# What the page loads from node_modules and vendor/, with the licences beside them: nothing else.
THIRD_PARTY = [
    "node_modules/@tensorflow/tfjs/dist/tf.min.js",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm",
    "node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js",
    "node_modules/p5/lib/p5.min.js",
    "node_modules/p5/license.txt",
    "vendor/ml5.min.js",
    "vendor/ml5.LICENSE.md",
]
WASM = [f for f in THIRD_PARTY if f.endswith(".wasm")]

pytestmark = pytest.mark.slow  # every test here builds the wheel or installs it in a fresh venv


def page_files() -> list[str]:
    """The page's own files (web/ relative), as the checkout has them."""
    return sorted(str(p.relative_to(WEB)) for pattern in ("*.html", "*.js", "*.css", "examples/ml5/*", "paintings/*.jpg")
                  for p in WEB.glob(pattern) if p.is_file())


def module_files() -> list[str]:
    package = ROOT / "src" / "stylemirror"
    return sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                  if p.relative_to(package).parts[0] != "web" and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built as `make wheel` builds it, from a copy of what a clean clone holds after `make setup`
    (the sources, and web/'s npm files), so no stale build/ of the checkout gets in."""
    missing = [f for f in THIRD_PARTY if not (WEB / f).is_file()]
    if missing:
        pytest.skip(f"web/{missing[0]} is missing, so no wheel can be built: run `make setup` first")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "licenses", source / "licenses")
    shutil.copytree(ROOT / "src", source / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(WEB, source / "web", ignore=lambda folder, names: [
        n for n in names if n in ("node_modules", "vendor") and Path(folder) == WEB])
    for name in ("node_modules", "vendor"):
        (source / "web" / name).symlink_to(WEB / name)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", out, source], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed. Its dependencies (torch ...) come
    from the test venv's site-packages, listed after its own: a path in a .pth file runs no .pth
    files of its own, so the checkout's editable install stays out."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-venv-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
                    wheel], check=True)
    return venv


def clean_env():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def start(venv, command, *args, cwd):
    """Starts one of the venv's commands (`python`, `stylemirror`) away from the checkout."""
    return subprocess.Popen([venv / "bin" / command, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=clean_env())


def finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_wheel_holds_the_page_and_nothing_more(wheel):
    assert wheel.name == f"stylemirror-{__version__}-py3-none-any.whl"  # pure Python
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = f"stylemirror-{__version__}.dist-info/"
        expected = {f"stylemirror/{f}" for f in module_files()} | {
            f"stylemirror/web/{f}" for f in page_files() + THIRD_PARTY}
        assert {n for n in names if not n.startswith(dist_info)} == expected
        # Byte for byte what the checkout serves, and the licences where PEP 639 puts them.
        for f in page_files() + THIRD_PARTY:
            assert z.read(f"stylemirror/web/{f}") == (WEB / f).read_bytes(), f
        licences = {n.removeprefix(f"{dist_info}licenses/") for n in names
                    if n.startswith(f"{dist_info}licenses/")}
        assert licences == {"LICENSE", "licenses/Apache-2.0.txt", "licenses/THIRD-PARTY.md", "licenses/pytorch-examples-BSD-3-Clause.txt"}
        assert z.read(f"{dist_info}licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        entry_points = z.read(f"{dist_info}entry_points.txt").decode()
    assert "stylemirror = stylemirror.cli:main" in entry_points
    print(f"\n{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB")


def test_installed_commands_work_away_from_the_checkout(venv, tmp_path):
    (tmp_path / "photos").mkdir()
    for seed in range(3):
        photo((48, 40)).rotate(90 * seed).save(tmp_path / "photos" / f"{seed}.jpg")
    photo((64, 48)).save(tmp_path / "photo.png")
    make_vgg_mat(tmp_path / "vgg.mat", upto="conv3_1")
    formats.save_safetensors(random_net(seed=4), tmp_path / "net.safetensors")
    # Side by side where they do not depend on each other: each spends seconds importing torch.
    running = {
        "where": start(venv, "python", "-c", "import stylemirror, stylemirror.mirror as m; "
                       "print(stylemirror.__file__); print(m.WEB)", cwd=tmp_path),
        "version": start(venv, "stylemirror", "--version", cwd=tmp_path),
        "help": start(venv, "python", "-m", "stylemirror", "--help", cwd=tmp_path),
        "models": start(venv, "stylemirror", "models", cwd=tmp_path),
        "train": start(venv, "stylemirror", "train", "--style", tmp_path / "photo.png", "--train-path",
                       tmp_path / "photos", "--vgg-path", tmp_path / "vgg.mat", "--style-layers",
                       "relu1_1,relu2_1,relu3_1", "--content-layer", "relu2_2", "--checkpoint-dir", tmp_path / "ckpt",
                       "--image-size", "32", "--batch-size", "2", "--workers", "0", "--max-steps", "2",
                       "--no-compile", cwd=tmp_path),
    }
    export = finish(start(venv, "stylemirror", "export", tmp_path / "net.safetensors", "--format", "ml5",
                          "-o", tmp_path / "ours", cwd=tmp_path))
    assert export.returncode == 0 and (tmp_path / "ours" / "manifest.json").is_file(), export.stderr
    stylized = finish(start(venv, "stylemirror", "stylize", tmp_path / "photo.png", "--model", tmp_path / "ours",
                            "-o", tmp_path / "out.png", cwd=tmp_path))
    assert stylized.returncode == 0, stylized.stderr
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (48, 64, 3) and out.std() > 10
    done = {name: finish(proc) for name, proc in running.items()}

    # The wheel's copy runs, page included, not the checkout's editable install.
    module, web = done["where"].stdout.split()
    assert Path(module).is_relative_to(venv) and Path(web).is_relative_to(venv), done["where"]
    assert not Path(web).is_symlink() and (Path(web) / "index.html").read_bytes() == (WEB / "index.html").read_bytes()
    assert done["version"].stdout.strip() == f"stylemirror {__version__}", done["version"]
    assert done["help"].returncode == 0 and done["help"].stdout.startswith("usage: stylemirror"), done["help"]
    assert all(command in done["help"].stdout for command in ("stylize", "export", "train", "mirror", "bench", "models"))
    assert done["models"].returncode == 0 and "wave" in done["models"].stdout, done["models"]
    assert done["train"].returncode == 0, done["train"].stderr
    assert (tmp_path / "ckpt" / "model" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def one_model(tmp_path_factory):
    """A models folder holding one ml5 folder, ours."""
    folder = tmp_path_factory.mktemp("models")
    formats.write_ml5(random_net(seed=4), folder / "ours")
    return folder


@pytest.fixture(scope="module")
def installed_mirror(venv, one_model):
    """The installed `stylemirror mirror` on a free port, serving one model, run from elsewhere."""
    proc = subprocess.Popen([venv / "bin" / "stylemirror", "mirror", "--no-browser", "--port", "0",
                             "--models", one_model], cwd=one_model, env=clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url, deadline, said = None, time.monotonic() + 60, ""
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1)[0]:
                said += proc.stdout.readline()
                url = next(iter(re.findall(r"style mirror at (http://\S+)", said)), None)
        assert url, f"the installed mirror did not start: {said}{proc.stderr.read() if proc.poll() is not None else ''}"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def get(url):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=30)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    return response.status, response.read()


def test_installed_mirror_serves_everything_its_pages_load(installed_mirror, venv):
    [web] = venv.glob("lib/python*/site-packages/stylemirror/web")
    for page in ("", "examples/ml5/"):
        status, html = get(urljoin(installed_mirror, page))
        assert status == 200
        loads = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html.decode())
        assert loads, page
        for ref in loads:
            if ref.startswith("data:"):
                continue
            url = urljoin(urljoin(installed_mirror, page), ref)
            status, body = get(url)
            assert status == 200 and body == (web / urlsplit(url).path.lstrip("/")).read_bytes(), url
    for wasm in WASM:  # tf.wasm.setWasmPaths() points at these
        assert get(urljoin(installed_mirror, wasm))[0] == 200, wasm
    status, index = get(urljoin(installed_mirror, "models/index.json"))
    models = json.loads(index)["models"]
    assert [m["name"] for m in models if m["format"] != "painting"] == ["ours"]
    for painting in (m for m in models if m["format"] == "painting"):  # the shipped ones, from the wheel
        assert get(urljoin(installed_mirror, painting["thumbnail"]))[0] == 200, painting


def test_installed_mirror_stylizes_camera_frames(installed_mirror, one_model, playwright, tmp_path):
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, photo((320, 240)), frames=1)  # a still camera: the frame beside the output is its source
    context = launch(playwright, tmp_path / "profile", fake_camera(y4m))
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{installed_mirror}?model=ours&backend=wasm&size=160x120&edgepad=32")
        page.wait_for_function("window.mirror && window.mirror.frames >= 2 || document.body.dataset.state === 'error'",
                               timeout=120000)
        assert page.evaluate("document.body.dataset.state") != "error", page.locator("#message").inner_text()
        assert page.locator("#backend").inner_text().startswith("wasm")
        frames = {}
        for canvas in ("output", "camera-view"):
            data = page.evaluate(f"Array.from(document.getElementById('{canvas}').getContext('2d')"
                                 ".getImageData(0, 0, 160, 120).data)")
            frames[canvas] = np.array(data, dtype=np.uint8).reshape(120, 160, 4)[..., :3].astype(int)
        # A camera frame, and beside it that frame stylized with the model as `stylize` does it
        # with the same edge padding.
        assert frames["camera-view"].std() > 10 and frames["output"].std() > 10
        ours = Stylizer(formats.read_model(one_model / "ours"), options=Options(edge_pad=32)).picture(
            Image.fromarray(frames["camera-view"].astype(np.uint8)))
        diff = np.abs(frames["output"] - np.asarray(ours).astype(int))
        assert diff.max() <= 3, f"max difference {diff.max()} levels"
        assert not errors
    finally:
        context.close()
