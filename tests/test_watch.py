"""Watching a training run in the mirror (`train --mirror`, `mirror --watch`), and recording the
stylized view."""

import http.client
import json
import os
import subprocess
import sys
import time

import av
import pytest
import torch

from helpers import ARTIFACTS, canvas_pixels, random_net, stylemirror, torchrun_train, train_args
from stylemirror import formats, mirror, watch
from stylemirror.errors import UserError
from stylemirror.network import TransformNet

TINY = ("--image-size", "64", "--batch-size", "1", "--log-interval", "1", "--epochs", "20")


def get(base, path):
    conn = http.client.HTTPConnection(base.split("//")[1].split("/")[0])
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def get_json(base, path):
    status, body = get(base, path)
    assert status == 200, path
    return json.loads(body)


def live_files(ckpt):
    return sorted(p.name for p in (ckpt / "live").iterdir())


@pytest.mark.slow
def test_training_writes_the_live_network_at_every_checkpoint(workdir, tmp_path):
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, *TINY, "--checkpoint-iterations", "3", "--max-steps", "7"))
    assert result.returncode == 0, result.stderr
    status = json.loads((ckpt / "live" / "live.json").read_text())
    assert status["step"] == status["total_steps"] == 7 and status["model"] == "step_00000007.safetensors"
    assert status["eta_s"] == 0 and status["images_per_s"] > 0 and 0 < status["epoch"] < 20
    assert set(status["losses"]) == {"content", "style", "tv", "grid", "total"}  # the grid term is on by default
    # The newest network and the one named before it; no temporary files.
    assert live_files(ckpt) == ["live.json", "step_00000006.safetensors", "step_00000007.safetensors"]
    final = formats.read_model(ckpt / "model" / "model.safetensors").state_dict()
    last = formats.read_model(ckpt / "live" / "step_00000007.safetensors").state_dict()
    assert all(torch.equal(final[k], last[k]) for k in final)
    # Step 6's file is step 6's network (the checkpoint's weights, in the files' layout).
    net = TransformNet.named("standard", "resize")
    net.load_state_dict(torch.load(ckpt / "ckpt_00000006.pt", weights_only=True)["model"])
    expected = net.plain().state_dict()
    at_6 = formats.read_model(ckpt / "live" / "step_00000006.safetensors").state_dict()
    assert all(torch.equal(expected[k], at_6[k]) for k in expected)
    assert not all(torch.equal(at_6[k], last[k]) for k in last)


def write_log(ckpt, steps):
    ckpt.mkdir(parents=True, exist_ok=True)
    with open(ckpt / "train_log.jsonl", "a") as f:
        for step in steps:
            f.write(json.dumps({"step": step, "epoch": step / 10, "content": 1.0, "style": 10.0 / step,
                                "tv": 0.1, "total": 11.1 / step, "images_per_s": 3.0}) + "\n")


def test_watch_waits_for_a_run_not_started_then_follows_it(tmp_path):
    ckpt = tmp_path / "runs" / "my run"
    srv = mirror.Mirror([tmp_path / "no models"], runs=watch.runs([ckpt])).serve(port=0)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        entry, *paintings = get_json(base, "/models/index.json")["models"]  # the run first, then the shipped paintings
        assert all(p["arch"] == "arbitrary" for p in paintings)
        assert entry["name"] == "my-run" and entry["url"] is None and entry["watch"] == "watch/my-run/latest.json"
        assert entry["label"] == "my-run (waiting for its first checkpoint)"
        assert get_json(base, "/watch/my-run/latest.json") == {
            "name": "my-run", "label": "my-run (waiting for its first checkpoint)", "state": "waiting", "step": None,
            "model": None, "losses": []}
        write_log(ckpt, [1, 2, 3, 4, 5])
        watch.write_live(ckpt, random_net(seed=1), {"step": 5, "epoch": 0.5, "total_steps": 10,
                                                    "images_per_s": 3.0, "eta_s": 1.7})
        entry = get_json(base, "/models/index.json")["models"][0]
        assert entry["label"] == "my-run (training, step 5)" and entry["url"] == "watch/my-run/step_00000005.safetensors"
        latest = get_json(base, "/watch/my-run/latest.json")
        assert latest["state"] == "training" and latest["eta_s"] == 1.7 and latest["arch"] == "standard"
        assert [r["step"] for r in latest["losses"]] == [1, 2, 3, 4, 5] and latest["losses"][-1]["total"] == 11.1 / 5
        status, body = get(base, "/" + latest["model"])
        assert status == 200 and body == (ckpt / "live" / "step_00000005.safetensors").read_bytes()
        # The run goes on, and finishes: the network named before stays until the next one.
        for step in (8, 10):
            watch.write_live(ckpt, random_net(seed=step, arch="lite"), {"step": step, "total_steps": 10})
        assert live_files(ckpt) == ["live.json", "step_00000008.safetensors", "step_00000010.safetensors"]
        entry = get_json(base, "/models/index.json")["models"][0]
        assert entry["label"] == "my-run (finished, step 10)" and entry["arch"] == "lite"
        assert get(base, "/watch/my-run/step_00000005.safetensors")[0] == 404
        # Started over with --fresh: the log goes on from step 1 again; only the new rows count.
        write_log(ckpt, [1, 2])
        assert [r["step"] for r in get_json(base, "/watch/my-run/latest.json")["losses"]] == [1, 2]
    finally:
        srv.shutdown()


def test_a_killed_run_says_stopped_not_training(tmp_path):
    """live.json names the process that wrote it: once that process is gone the run is
    "stopped" (to be resumed), not "training" forever. A run on another machine cannot be
    checked, and a finished one is finished."""
    watch.write_live(tmp_path / "run", random_net(seed=1), {"step": 5, "total_steps": 10})
    run = watch.runs([tmp_path / "run"])[0]
    assert run.latest()["state"] == "training"  # this test's own process wrote it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status_file = tmp_path / "run" / "live" / "live.json"
    status = json.loads(status_file.read_text())
    assert status["trainer"]["pid"] == os.getpid()
    status["trainer"]["pid"] = int(dead.stdout)
    status_file.write_text(json.dumps(status))
    assert run.latest()["state"] == "stopped" and run.entry()["label"] == "run (stopped, step 5)"
    status_file.write_text(json.dumps({**status, "trainer": {"host": "another-machine", "pid": int(dead.stdout)}}))
    assert run.latest()["state"] == "training"
    status_file.write_text(json.dumps({**status, "step": 10}))
    assert run.latest()["state"] == "finished"


def test_a_long_log_is_thinned_keeping_the_newest_row(tmp_path):
    write_log(tmp_path / "run", range(1, 1001))
    rows = watch.runs([tmp_path / "run"])[0].history()
    assert len(rows) <= watch.HISTORY_POINTS and rows[-1]["step"] == 1000 and rows[0]["step"] < 10


def test_the_history_holds_the_weighted_terms_a_run_logged(tmp_path):
    """The chart draws the grid and steadiness terms beside the others where the run trained
    them; a run without them has no such field (not a null the page would plot)."""
    write_log(tmp_path / "run", [1, 2])
    with open(tmp_path / "run" / "train_log.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "epoch": 0.3, "content": 1.0, "style": 2.0, "tv": 0.1, "grid": 0.5,
                            "stability": 0.25, "total": 3.85, "images_per_s": 3.0}) + "\n")
    rows = watch.runs([tmp_path / "run"])[0].history()
    assert set(rows[0]) == {"step", "epoch", "content", "style", "tv", "total"}
    assert rows[-1] == {"step": 3, "epoch": 0.3, "content": 1.0, "style": 2.0, "tv": 0.1, "grid": 0.5,
                        "stability": 0.25, "total": 3.85}


def test_a_live_file_still_syncing_is_not_offered(tmp_path):
    """live.json may arrive before the network it names (a sync): the run waits for it."""
    (tmp_path / "run" / "live").mkdir(parents=True)
    (tmp_path / "run" / "live" / "live.json").write_text(json.dumps({"step": 3, "model": "step_00000003.safetensors"}))
    run = watch.runs([tmp_path / "run"])[0]
    assert run.latest()["model"] is None and run.entry()["url"] is None
    (tmp_path / "run" / "live" / "live.json").write_text('{"step": 3, "mod')  # cut short
    assert run.latest()["state"] == "waiting"


def test_watched_runs_and_models_get_distinct_names(tmp_path):
    formats.write_ml5(random_net(), tmp_path / "models" / "run")
    runs = watch.runs([tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "a" / ".." / "a" / "run"])
    assert [r.name for r in runs] == ["run", "run-2"]  # a folder named twice is watched once
    assert list(mirror.find_models([tmp_path / "models"], taken={"run", "run-2"})) == ["run-3"]


@pytest.mark.parametrize("where", ["file.txt", "file.txt/run"])
def test_a_bad_watch_folder_is_one_line_exit_2(tmp_path, where):
    (tmp_path / "file.txt").write_text("not a folder")
    result = stylemirror("mirror", "--watch", tmp_path / where, "--no-browser", "--port", "0")
    assert result.returncode == 2
    assert result.stderr == (f"stylemirror: error: --watch {tmp_path / where}: {tmp_path / 'file.txt'} is a file, "
                             "not a folder; give a training run's --checkpoint-dir\n")


def test_mirror_watch_on_a_run_not_started_serves_and_waits(tmp_path):
    run = tmp_path / "later"
    proc = subprocess.Popen([sys.executable, "-m", "stylemirror", "mirror", "--watch", str(run), "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = [proc.stdout.readline(), proc.stdout.readline()]
        assert said[1] == f"{run}: no network there yet; the page waits for the run's first one\n", (said, proc.stderr)
        url = said[0].split()[3]
        assert url.endswith("/?model=later")
        assert get_json(url, "/watch/later/latest.json")["state"] == "waiting"
        watch.write_live(run, random_net(arch="lite"), {"step": 0, "total_steps": 3})
        assert get_json(url, "/watch/later/latest.json")["model"] == "watch/later/step_00000000.safetensors"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_beside_a_run_a_busy_port_gives_way_to_a_free_one(tmp_path, capsys):
    import socket
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 8000))
        busy.listen()
    except OSError:
        pass  # something else holds it already: as good
    try:
        srv = mirror.start(port=8000, open_browser=False, watch=[tmp_path / "run"], any_port=True, note="n")
        assert srv.server_address[1] != 8000
        assert f"style mirror at http://127.0.0.1:{srv.server_address[1]}/?model=run  (n)" in capsys.readouterr().out
        srv.shutdown()
        with pytest.raises(UserError, match="cannot listen on 127.0.0.1:8000"):
            mirror.start(port=8000, open_browser=False, watch=[tmp_path / "run"])
    finally:
        busy.close()


BROWSER_SCRIPT = """
import json, sys, urllib.request
url = sys.argv[1]
base = url.split("?")[0]
index = json.load(urllib.request.urlopen(base + "models/index.json"))
entry = index["models"][0]
model = urllib.request.urlopen(base + entry["url"]).read()
with open(sys.argv[2], "a") as f:  # one line per page opened
    f.write(json.dumps({"url": url, "entry": entry, "model_bytes": len(model)}) + "\\n")
"""


def browser_env(tmp_path):
    """BROWSER stands in for the browser: it fetches what the page would, while training waits
    for it, and notes each opening in the file returned."""
    (tmp_path / "browser.py").write_text(BROWSER_SCRIPT)
    seen = tmp_path / "seen.jsonl"
    return {**os.environ, "BROWSER": f"{sys.executable} {tmp_path / 'browser.py'} %s {seen}"}, seen


@pytest.mark.slow
def test_train_mirror_serves_the_run_and_opens_it(workdir, tmp_path):
    """The page is opened on the run while it trains."""
    env, seen = browser_env(tmp_path)
    ckpt = tmp_path / "my-style"
    result = stylemirror(*train_args(workdir, ckpt, *TINY, "--arch", "lite", "--max-steps", "2", "--mirror"), env=env)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("style mirror at ")]
    assert len(said) == 1 and said[0].endswith(f"/?model=my-style  (it stops with this run; `stylemirror mirror "
                                               f"--watch {ckpt}` serves it after)")
    [opened] = [json.loads(line) for line in seen.read_text().splitlines()]
    assert opened["url"] == said[0].split()[3] and opened["url"].startswith("http://127.0.0.1:")
    assert opened["entry"]["label"] == "my-style (training, step 0)" and opened["entry"]["arch"] == "lite"
    assert opened["model_bytes"] == opened["entry"]["size"] > 1e5


@pytest.mark.slow
def test_train_mirror_under_torchrun_is_served_and_opened_once(workdir, tmp_path):
    """Under torchrun only the first process serves the page, opens it and writes the live
    networks it shows: the others train beside it without a server of their own."""
    env, seen = browser_env(tmp_path)
    ckpt = tmp_path / "together"
    result = torchrun_train(*train_args(workdir, ckpt, *TINY, "--arch", "lite", "--max-steps", "2",
                                        "--checkpoint-iterations", "1", "--mirror"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sum(line.startswith("style mirror at ") for line in result.stdout.splitlines()) == 1, result.stdout
    [opened] = [json.loads(line) for line in seen.read_text().splitlines()]
    assert opened["entry"]["label"] == "together (training, step 0)"
    assert live_files(ckpt)[-1] == "step_00000002.safetensors"


# --- in the browser -------------------------------------------------------------------------

def watch_state(page):
    return page.evaluate("({watch: window.mirror.watch, frames: window.mirror.frames, tensors: tf.memory().numTensors,"
                         " streaming: !!(window.mirror.stream && window.mirror.stream.active)})")


def test_the_page_follows_a_training_run(camera_browser, workdir, tmp_path):
    """Opened before the run starts, the page waits; then it follows each checkpoint of the
    run (and of the run resumed), swapping networks while the camera frames keep coming."""
    ckpt = tmp_path / "run"
    srv = mirror.Mirror([tmp_path / "no models"], runs=watch.runs([ckpt])).serve(port=0)
    page = camera_browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/?model=run&backend=wasm&size=160x120")
        page.wait_for_function("document.getElementById('message').textContent.includes('Waiting for the training run')",
                               timeout=60000)
        args = train_args(workdir, ckpt, *TINY, "--arch", "lite", "--checkpoint-iterations", "2")
        first = stylemirror(*args, "--max-steps", "4")
        assert first.returncode == 0, first.stderr
        page.wait_for_function("window.mirror.watch && window.mirror.watch.step === 4 && window.mirror.frames >= 3",
                               timeout=120000)
        before = watch_state(page)
        # The run goes on (resumed) to step 16, checkpoints every 2 steps: watch it as it does.
        proc = subprocess.Popen([sys.executable, "-m", "stylemirror", *map(str, args), "--max-steps", "16"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        while proc.poll() is None or not seen or seen[-1]["watch"]["step"] != 16:
            seen.append(watch_state(page))
            assert len(seen) < 1200, f"the page never showed step 16: {seen[-1]}"
            time.sleep(0.1)
        assert proc.returncode == 0, proc.stderr.read()
        steps = [s["watch"]["step"] for s in seen]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "watch.png"))  # for a person to look at
        assert steps == sorted(steps) and len(set(steps)) >= 3, steps  # advancing: checkpoints seen on the way
        assert set(steps) <= set(range(4, 17, 2))
        page.wait_for_function(f"window.mirror.frames >= {seen[-1]['frames'] + 3}", timeout=60000)
        after = watch_state(page)
        assert after["streaming"] and before["streaming"] and after["frames"] > seen[-1]["frames"] > before["frames"]
        assert after["tensors"] == before["tensors"]  # each old network freed
        assert "finished, step 16 of 16" in page.locator("#watch-step").inner_text()
        assert "ETA" not in page.locator("#watch-eta").inner_text()
        assert page.locator("#model-select option").first.inner_text() == "run (finished, step 16)"
        assert canvas_pixels(page, "watch-losses").std() > 3  # the loss plot was drawn
        assert canvas_pixels(page, "output").std() > 10 and not errors
    finally:
        page.close()
        srv.shutdown()


def test_several_runs_standard_networks_and_switching_between_them(camera_browser, tmp_path):
    """Two runs listed by their folders' names; the standard network swapped in as the lite one
    is; choosing the other run, not started yet, waits for it, then follows it; the first run,
    gone on meanwhile, is listed and chosen again at its newest step."""
    watch.write_live(tmp_path / "a", random_net(seed=0), {"step": 0, "total_steps": 20})
    srv = mirror.Mirror([tmp_path / "no models"], runs=watch.runs([tmp_path / "a", tmp_path / "b"])).serve(port=0)
    page = camera_browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/?backend=wasm&size=160x120")
        page.wait_for_function("window.mirror.watch && window.mirror.frames >= 3", timeout=120000)
        assert page.locator("#model-select option").all_inner_texts()[:2] == [  # then the shipped paintings
            "a (training, step 0)", "b (waiting for its first checkpoint)"]
        before = watch_state(page)
        for step in (10, 20):
            watch.write_live(tmp_path / "a", random_net(seed=step), {"step": step, "total_steps": 20})
            page.wait_for_function(f"window.mirror.watch.step === {step}", timeout=60000)
        page.wait_for_function(f"window.mirror.frames >= {watch_state(page)['frames'] + 3}", timeout=60000)
        after = watch_state(page)
        assert after["tensors"] == before["tensors"] and after["streaming"]
        page.select_option("#model-select", "b")
        page.wait_for_function("document.getElementById('message').textContent.includes('Waiting for the training run \"b\"')",
                               timeout=60000)
        assert page.evaluate("window.mirror.watch") is None and not page.locator("#watch-panel").is_visible()
        watch.write_live(tmp_path / "b", random_net(seed=5, arch="lite"), {"step": 5, "total_steps": 9})
        page.wait_for_function("window.mirror.watch && window.mirror.watch.step === 5 && window.mirror.model === 'b'",
                               timeout=60000)
        page.wait_for_function("document.getElementById('watch-step').textContent === 'training, step 5 of 9'",
                               timeout=60000)
        # Run a goes on while b is on show: its place in the list keeps up, and choosing it again
        # loads its newest network (step 20's, the one the page had, is gone by then).
        for step in (30, 40):
            watch.write_live(tmp_path / "a", random_net(seed=step), {"step": step, "total_steps": 50})
        assert not (tmp_path / "a" / "live" / "step_00000020.safetensors").exists()
        page.wait_for_function("document.querySelector('#model-select option').textContent === 'a (training, step 40)'",
                               timeout=60000)
        page.select_option("#model-select", "a")
        page.wait_for_function("window.mirror.model === 'a' && window.mirror.watch && window.mirror.watch.step === 40",
                               timeout=60000)
        assert "Could not load" not in page.locator("#message").inner_text() and not errors
    finally:
        page.close()
        srv.shutdown()


def two_style_net(seed):
    torch.manual_seed(seed)
    net = TransformNet.named("lite", styles=2)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("scale", "shift")):
                p.uniform_(0.5, 1.5) if name.endswith("scale") else p.uniform_(-0.5, 0.5)
    return net.eval()


def test_a_multi_style_run_keeps_its_blend_across_swaps(camera_browser, tmp_path):
    run = tmp_path / "two"
    watch.write_live(run, two_style_net(0), {"step": 0, "total_steps": 2})
    srv = mirror.Mirror([tmp_path / "no models"], runs=watch.runs([run])).serve(port=0)
    page = camera_browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/?backend=wasm&size=160x120")
        page.wait_for_function("window.mirror.watch && window.mirror.frames >= 2", timeout=120000)
        page.evaluate("window.mirror.setBlend({style1: 0.25, style2: 0.75})")
        watch.write_live(run, two_style_net(1), {"step": 1, "total_steps": 2})
        page.wait_for_function("window.mirror.watch.step === 1", timeout=60000)
        assert page.evaluate("[window.mirror.net.blend, window.mirror.blend]") == [[0.25, 0.75], {"style1": 0.25, "style2": 0.75}]
        assert page.locator("#styles-panel button").all_inner_texts() == ["style1", "style2"]
    finally:
        page.close()
        srv.shutdown()


def decode_webm(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_recording_gives_a_playable_webm(camera_browser, mirror_url, tmp_path):
    def camera_page(limit):
        page = camera_browser.new_page()
        page.goto(f"{mirror_url}?model=ours&backend=wasm&size=160x120&recordlimit={limit}")
        page.wait_for_function("window.mirror.frames >= 3", timeout=120000)
        return page

    page = camera_page(60)  # stopped by hand ...
    with page.expect_download(timeout=60000) as download:
        page.click("#record")
        page.wait_for_function(f"window.mirror.frames >= {page.evaluate('window.mirror.frames') + 5}", timeout=60000)
        assert "● REC 0:0" in page.locator("#recording").inner_text() and page.locator("#record").inner_text() == "stop"
        page.click("#record")
    by_hand = tmp_path / "by_hand.webm"
    download.value.save_as(by_hand)
    assert download.value.suggested_filename.startswith("stylemirror-ours-") and by_hand.suffix == ".webm"
    assert not page.locator("#recording").is_visible() and page.locator("#record").inner_text() == "record"
    page.close()
    page = camera_page(2)  # ... and by the time limit
    with page.expect_download(timeout=60000) as download:
        page.click("#record")
        assert page.locator("#recording").is_visible()
    by_limit = tmp_path / "by_limit.webm"
    download.value.save_as(by_limit)
    assert not page.locator("#recording").is_visible()
    page.close()
    # The clip stopped by hand spans 5 frames of the page at least; the one stopped by the
    # limit, whatever 2 s of a busy 2-core machine gave.
    for clip, minimum_frames in ((by_hand, 2), (by_limit, 1)):
        data = clip.read_bytes()
        assert data[:4] == b"\x1a\x45\xdf\xa3"  # EBML: Matroska/WebM
        frames = decode_webm(clip)
        assert len(frames) >= minimum_frames and frames[-1].shape == (120, 160, 3) and frames[-1].std() > 10
