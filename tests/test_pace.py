"""web/pace.js, the page's choice of camera size for a target frame rate, run in node on
synthetic machines: rate history in, size out."""

import json
import shutil
import subprocess

import pytest

from helpers import WEB, open_page

NODE = shutil.which("node")

# The page's levels (camera-size.js): each size without and with index.json's 48 px edge pad,
# rounded up to its pad multiple of 4, costed in pixels.
LEVELS = [{"size": s, "pad": p, "pixels": (w + 2 * p) * (h + 2 * p)}
          for s, (w, h) in {"160x120": (160, 120), "320x240": (320, 240), "640x480": (640, 480)}.items()
          for p in (0, 48)]
START = 2  # 320x240 without the pad, as the page starts

# A machine: each frame's busy ms is `ms` at 320x240 without the pad, scaled by the level's
# pixels to the power `power` (1: as the pace predicts), by `load` from `load_from` s on, and by
# a repeatable noise of +-`noise`.
SIMULATE = """
const { Pace } = await import(process.argv[1]);
const m = JSON.parse(process.argv[2]);
const pace = new Pace(m.levels, { target: m.target, start: m.start });
let now = 0, seed = 1, power = m.power;
const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
const levels = [];
while (now < 1000 * m.seconds) {
  const level = pace.levels[pace.level];
  const load = now >= 1000 * m.load_from ? m.load : 1;
  if (m.network_at !== null && now >= 1000 * m.network_at && power !== m.network_power) {
    power = m.network_power;  // another style's network, as the page says it to the pace
    if (m.forget) pace.forget(now);
  }
  const busy = m.ms * (level.pixels / 76800) ** power * load * (1 + m.noise * (2 * random() - 1));
  now += busy;
  levels.push(pace.frame(now, busy));
}
console.log(JSON.stringify({ levels, changes: pace.changes }));
"""


def simulate(ms, target=12.0, seconds=300, power=1.0, noise=0.1, load=1.0, load_from=0.0, start=START,
             network_at=None, network_power=1.0, forget=True):
    if NODE is None:
        pytest.skip("node is not installed")
    machine = {"levels": LEVELS, "start": start, "target": target, "ms": ms, "seconds": seconds, "power": power,
               "noise": noise, "load": load, "load_from": load_from, "network_at": network_at,
               "network_power": network_power, "forget": forget}
    out = subprocess.run([NODE, "--input-type=module", "-e", SIMULATE, (WEB / "pace.js").as_uri(), json.dumps(machine)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_slow_machine_steps_down_to_the_smallest_size():
    """320x240 at 2 fps against 12: 160x120 would give 8, so the pace goes there at once."""
    run = simulate(ms=500)
    assert run["levels"][-1] == 0 and run["changes"] == 1


def test_a_machine_fast_enough_for_a_padded_320x240_stops_there():
    """320x240 at 30 fps: with the pad (1.8x its pixels) 16.5 fps, clear of 12 by the margin;
    640x480 (4x) would give 7.5."""
    run = simulate(ms=1000 / 30)
    assert run["levels"][-1] == 3 and run["changes"] == 1


def test_a_fast_machine_climbs_to_the_top():
    run = simulate(ms=5)
    assert run["levels"][-1] == len(LEVELS) - 1 and run["changes"] == len(LEVELS) - 1 - START


def test_no_swinging_where_the_next_size_costs_more_than_its_pixels():
    """The padded 320x240 predicted at 13.6 fps (above 12 by less than the margin) never tries;
    made cheaper it tries, measures less than its pixels promised (power 1.6), steps back, and
    from then on predicts with what it measured: one try in ten minutes, not one a window."""
    assert simulate(ms=1000 / 24.7, seconds=600)["changes"] == 0
    run = simulate(ms=1000 / 30, seconds=600, power=1.6, noise=0.2)
    assert run["changes"] == 2 and run["levels"][-1] == START


def test_no_swinging_around_the_target_with_noisy_frames():
    """Started at the padded 320x240, which gives 12.4 fps against 12 with +-30% noise a frame:
    a window below 12 takes it down to 320x240 (22.6 fps), where it stays."""
    run = simulate(ms=1000 / 12.4 * 76800 / LEVELS[3]["pixels"], seconds=600, noise=0.3, start=3)
    assert run["changes"] == 1 and run["levels"][-1] == 2


def test_it_steps_down_under_load_and_climbs_back_once_the_load_is_gone():
    """30 fps at 320x240 climbs to the padded 320x240; 3x slower from 60 s on, that gives 5.5
    fps and the padded 160x120 13.9. 10 fps at 320x240 steps down to the padded 160x120;
    3x faster, it climbs back through 320x240 to the padded 320x240."""
    slowed = simulate(ms=1000 / 30, load=3.0, load_from=60, seconds=180)
    assert slowed["levels"][int(0.1 * len(slowed["levels"]))] == 3 and slowed["levels"][-1] == 1
    recovered = simulate(ms=1000 / 10, load=1 / 3, load_from=60, seconds=180)
    assert recovered["levels"][int(0.1 * len(recovered["levels"]))] == 1 and recovered["levels"][-1] == 3
    assert recovered["changes"] == 3


def test_another_network_is_measured_afresh():
    """The padded 320x240 measured 2.6x dearer than 320x240 (power 1.6) keeps the pace at
    320x240. Another style's network costs what its pixels say (padded: 16.5 fps): once told,
    the pace climbs; kept on the last network's ratio it would not."""
    told = simulate(ms=1000 / 30, seconds=600, power=1.6, network_at=300)
    assert told["levels"][len(told["levels"]) // 3] == START and told["levels"][-1] == 3
    untold = simulate(ms=1000 / 30, seconds=600, power=1.6, network_at=300, forget=False)
    assert untold["levels"][-1] == START


# ---------------------------------------------------------------- the page

def footer(page):
    return page.locator("#pace").inner_text()


def output_size(page):
    return page.evaluate("[document.getElementById('output').width, document.getElementById('output').height]")


def test_the_page_steps_down_to_160x120_where_its_target_is_out_of_reach(camera_browser, mirror_url):
    page = open_page(camera_browser, f"{mirror_url}?model=lite&backend=wasm&fps=1000")
    page.wait_for_function("window.mirror.pace && window.mirror.pace.size === '160x120'", timeout=120000)
    start = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {start + 2}", timeout=60000)
    assert output_size(page) == [160, 120] and page.locator("#resolution-select").input_value() == "160x120"
    assert page.evaluate("window.mirror.pace") == {"auto": True, "target": 1000, "size": "160x120", "pad": 0, "changes": 1}
    assert footer(page) == "· 160×120 · auto · 1000 fps target"
    # The user's size turns the pace off.
    page.select_option("#resolution-select", "320x240")
    start = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {start + 12}", timeout=120000)
    assert output_size(page) == [320, 240] and footer(page) == "· 320×240 · chosen"
    assert page.evaluate("window.mirror.pace.auto") is False and not page.errors
    page.close()


def test_the_page_climbs_where_its_target_is_easy(camera_browser, mirror_url):
    """?fps=0.1: from 320x240 to 320x240 with the edge pad, then to 640x480."""
    page = open_page(camera_browser, f"{mirror_url}?model=lite&backend=wasm&fps=0.1")
    page.wait_for_function("window.mirror.pace && window.mirror.pace.changes === 1", timeout=120000)
    assert page.evaluate("[window.mirror.pace.size, window.mirror.pace.pad]") == ["320x240", 48]
    assert footer(page) == "· 320×240 + edge pad · auto · 0.1 fps target"
    page.wait_for_function("window.mirror.pace.size === '640x480'", timeout=180000)
    start = page.evaluate("window.mirror.frames")
    page.wait_for_function(f"window.mirror.frames >= {start + 2}", timeout=120000)
    assert output_size(page) == [640, 480] and page.evaluate("window.mirror.pace.pad") == 0 and not page.errors
    page.close()


def test_a_size_in_the_url_holds(camera_browser, mirror_url):
    page = open_page(camera_browser, f"{mirror_url}?model=lite&backend=wasm&fps=1000&size=320x240")
    page.wait_for_function("window.mirror.frames >= 12", timeout=120000)
    assert output_size(page) == [320, 240] and footer(page) == "· 320×240 · chosen"
    assert page.evaluate("window.mirror.pace") == {"auto": False, "target": 1000, "size": "320x240", "pad": None,
                                                   "changes": 0}
    page.close()
