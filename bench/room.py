"""The README's pictures of the mirror on a phone and as a kiosk: the page in headless Chromium
(an emulated Pixel 7 in portrait; a 1280x720 screen with ?kiosk), its fake camera showing
../shared/images/amber.jpg, the Great Wave painting as the style. Writes bench/room/phone.jpg
and bench/room/kiosk.jpg.

    .venv/bin/python bench/room.py
"""

import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps
from playwright.sync_api import sync_playwright

from stylemirror import mirror
from stylemirror.bench import CHROMIUM_ARGS, write_y4m

HERE = Path(__file__).resolve().parent / "room"
PHOTO = Path(__file__).resolve().parents[2] / "shared" / "images" / "amber.jpg"
FRAMES = 3  # drawn before the picture is taken, so that it shows the steadied camera


def shoot(playwright, profile, url, picture, width, **emulated):
    camera = profile.parent / "camera.y4m"
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS + [
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"], **emulated)
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(f"window.mirror.frames >= {FRAMES}", timeout=600000)
        page.screenshot(path=str(profile.parent / "shot.png"), timeout=300000)  # a busy page answers late
    finally:
        context.close()
    shot = Image.open(profile.parent / "shot.png").convert("RGB")
    shot.thumbnail((width, 10 * width))
    shot.save(picture, quality=80)
    print(f"{picture}: {shot.width}x{shot.height}, {picture.stat().st_size / 1e3:.0f} kB")


def main():
    if not PHOTO.exists():
        sys.exit(f"{PHOTO} is absent: the shared pictures live beside the repo")
    HERE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # A still camera (one frame, the photo cropped to 4:3, not squashed): a picture to look at.
        write_y4m(tmp / "camera.y4m", ImageOps.fit(Image.open(PHOTO).convert("RGB"), (640, 480)), frames=1)
        (tmp / "none").mkdir()
        srv = mirror.Mirror([tmp / "none"]).serve(port=0)
        base = f"http://127.0.0.1:{srv.server_address[1]}/?model=great_wave&backend=wasm"
        with sync_playwright() as p:
            phone = {k: v for k, v in p.devices["Pixel 7"].items() if k != "default_browser_type"}
            shoot(p, tmp / "phone", f"{base}&size=640x480", HERE / "phone.jpg", 300, **{**phone, "device_scale_factor": 1})
            shoot(p, tmp / "kiosk", f"{base}&kiosk&cycle=0&size=640x480", HERE / "kiosk.jpg", 640,
                  viewport={"width": 1280, "height": 720})
        srv.shutdown()


if __name__ == "__main__":
    main()
