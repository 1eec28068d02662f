"""Issue 14: nothing of the user's is ever lost, any picture or video size works, and every bad
input gets one clear line. The CLI runs for real (in this process where it can, for speed)."""

import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import time

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import make_vgg_mat, make_video, photo, random_net, snapshot, stylemirror
from stylemirror import formats, mirror, server, sheet
from stylemirror.stylize import Options, Stylizer, run

NET = random_net(seed=3)


def nan_net():
    net = random_net(seed=9)
    with __import__("torch").no_grad():
        net.conv2.norm.scale[3] = float("nan")
    return net


@pytest.fixture
def user(tmp_path):
    """A user's folder: models, pictures, a video, and files of their own where outputs might go."""
    formats.write_ml5(NET, tmp_path / "model")
    formats.save_safetensors(nan_net(), tmp_path / "nan.safetensors")
    formats.write_ml5(nan_net(), tmp_path / "nan-ml5")
    photo((20, 16)).save(tmp_path / "photo.jpg")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.txt").write_text("four years of work")
    (tmp_path / "thesis" / "sub").mkdir()
    (tmp_path / "thesis" / "sub" / "notes.txt").write_text("notes")
    (tmp_path / "album").mkdir()
    for name in ("a.png", "b.png"):
        photo((16, 12)).save(tmp_path / "album" / name)
    make_video(tmp_path / "clip.mp4", frames=2, size=(32, 24), audio=False)
    (tmp_path / "run" / "model" / "ml5").mkdir(parents=True)
    (tmp_path / "run" / "model" / "ml5" / "mine.txt").write_text("my notes")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello")
    return tmp_path


TRAIN = ["train", "--style", "{d}/photo.jpg", "--train-path", "{d}/album", "--checkpoint-dir", "{d}/run"]
BAD_INPUTS = [
    # Data that would have been lost: refused, every file left as it was.
    (["export", "{d}/model", "--format", "ml5", "-o", "{d}/thesis"], "thesis holds files that are not an ml5 model"),
    (["export", "{d}/model", "--format", "ml5", "-o", "{d}/photo.jpg"], "photo.jpg is a file; refusing"),
    (["export", "{d}/model", "--format", "onnx", "-o", "{d}/photo.jpg"], "needs a file name ending in .onnx"),
    (["export", "{d}/model", "--format", "safetensors", "-o", "{d}/thesis.safetensors"], None),  # a control
    (["export", "{d}/model", "--format", "onnx", "-o", "{d}/model.onnx"], "model.onnx exists and is not an ONNX model"),
    ([*TRAIN, "--model-dir", "{d}/run/model"], "run/model/ml5 holds files that are not an ml5 model (mine.txt)"),
    ([*TRAIN], "run/model/ml5 holds files that are not an ml5 model"),
    (["stylize", "--model", "{d}/model", "{d}/album", "-o", "{d}/album"], "is inside the input folder"),
    (["stylize", "--model", "{d}/model", "{d}/album", "-o", "{d}/album/out"], "is inside the input folder"),
    # Tracebacks before.
    (["stylize", "--model", "{d}/model", "{d}/photo.jpg", "-o", "{d}/o.png", "--device", "mps"], "--device mps: "),
    (["stylize", "--model", "{d}/model", "{d}/clip.mp4", "-o", "{d}/x.png"], "the output must be a video file"),
    (["mirror", "--port", "99999", "--no-browser"], "--port: must be between 0 and 65535"),
    ([*TRAIN, "--learning-rate", "nan"], "--learning-rate must be a positive number"),
    ([*TRAIN, "--style-weight", "inf"], "--style-weight must be a number"),
    ([*TRAIN, "--workers", "-3"], "--workers must be 0"),
    # Messages that misled.
    (["stylize", "--model", "{d}/model", "{d}/photo.jpg", "-o", "{d}/photo.jpg/x.png"],
     "photo.jpg/x.png: {d}/photo.jpg is a file, not a folder"),
    (["stylize", "--model", "{d}/model", "{d}/photo.jpg", "-o", "{d}/photo.png"], None),  # fine: a control
    # Smaller.
    (["mirror", "--models", "{d}/nonexistent", "--no-browser"], "--models {d}/nonexistent: no such folder"),
    (["stylize", "--model", "{d}/model.onnx", "{d}/photo.jpg", "-o", "{d}/o.png"],
     "ONNX is an export format only; stylemirror reads models from ml5 folders, .safetensors"),
    (["stylize", "--model", "{d}/nan.safetensors", "{d}/photo.jpg", "-o", "{d}/o.png"],
     "conv2.norm.scale holds NaN or infinite values"),
    (["stylize", "--model", "{d}/nan-ml5", "{d}/photo.jpg", "-o", "{d}/o.png"], "holds NaN or infinite values"),
    (["export", "{d}/nan.safetensors", "--format", "onnx", "-o", "{d}/n.onnx"], "holds NaN or infinite values"),
    (["stylize", "--model", "{d}/empty.pt", "{d}/photo.jpg", "-o", "{d}/o.png"],
     "empty.pt: refused: not a plain tensor file (damaged, cut short"),
    (["stylize", "--model", "{d}/text.pt", "{d}/photo.jpg", "-o", "{d}/o.png"],
     "text.pt: refused: not a plain tensor file (damaged, cut short"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[f"{i}-{a[0]}" for i, (a, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_line_and_keeps_every_file(user, args, message):
    before = snapshot(user)
    code, _, err = stylemirror(*[a.format(d=user) for a in args])
    if message is None:
        assert code == 0, err
        return
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("stylemirror"), err
    assert message.format(d=user) in err and "Traceback" not in err
    assert snapshot(user) == before


def test_one_picture_into_an_existing_folder_goes_inside(user):
    (user / "outs").mkdir()
    code, out, err = stylemirror("stylize", "--model", user / "model", user / "photo.jpg", "-o", user / "outs")
    assert code == 0, err
    assert out.strip() == str(user / "outs" / "photo.jpg")
    assert Image.open(user / "outs" / "photo.jpg").size == (20, 16)


def test_folder_with_unreadable_pictures_writes_every_readable_one(user):
    (user / "album" / "broken.png").write_bytes(b"\x89PNG not really")
    (user / "album" / "sub").mkdir()
    (user / "album" / "sub" / "zero.jpg").write_bytes(b"")
    photo((12, 10)).save(user / "album" / "sub" / "z.png")
    code, out, err = stylemirror("stylize", "--model", user / "model", user / "album", "-o", user / "out",
                                 "--batch-size", "2")
    assert code == 2
    written = sorted(str(p.relative_to(user / "out")) for p in (user / "out").rglob("*") if p.is_file())
    assert written == ["album/a.png", "album/b.png", "album/sub/z.png"]
    assert sorted(out.split()) == sorted(str(user / "out" / w) for w in written)
    errors = [line for line in err.splitlines() if line.startswith("stylemirror")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "2 of 5 inputs were not stylized (the other 3 were written)" in errors[0]
    assert "broken.png" in errors[0] and "zero.jpg" in errors[0]


def test_stylize_takes_a_training_model_dir(user):
    """A training --model-dir (model.safetensors, model.onnx, ml5/, model.json): what the mirror lists."""
    run_dir = user / "trained"
    formats.save_safetensors(random_net(seed=1, arch="lite"), run_dir / "model.safetensors")
    formats.export_onnx(random_net(seed=1, arch="lite"), run_dir / "model.onnx")
    code, _, err = stylemirror("stylize", "--model", run_dir, user / "photo.jpg", "-o", user / "o.png")
    assert code == 0, err
    direct = Stylizer(formats.read_model(run_dir / "model.safetensors")).picture(Image.open(user / "photo.jpg"))
    assert np.array_equal(np.asarray(Image.open(user / "o.png")), np.asarray(direct))


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_written_files_get_the_umask_modes(user, umask_027):
    assert stylemirror("export", user / "model", "--format", "ml5", "-o", user / "e").returncode == 0
    assert stylemirror("export", user / "model", "--format", "onnx", "-o", user / "e.onnx").returncode == 0
    assert stylemirror("stylize", "--model", user / "model", user / "album", user / "clip.mp4",
                       "-o", user / "s").returncode == 0
    assert mode(user / "e") == 0o750 and mode(user / "e" / "Variable_3") == 0o640
    assert mode(user / "e.onnx") == 0o640
    assert mode(user / "s") == 0o750 and mode(user / "s" / "album" / "a.png") == 0o640
    assert mode(user / "s" / "clip.mp4") == 0o640
    os.chmod(user / "e.onnx", 0o604)  # a file replaced keeps its mode, as cp does
    assert stylemirror("export", user / "model", "--format", "onnx", "-o", user / "e.onnx").returncode == 0
    assert mode(user / "e.onnx") == 0o604


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    (root / "photos").mkdir()
    for i in range(3):
        photo((40, 30)).rotate(90 * i).save(root / "photos" / f"{i}.jpg")
    (root / "junk").mkdir()
    for i in range(3):
        (root / "junk" / f"{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    photo((32, 32)).save(root / "style.png")
    make_vgg_mat(root / "vgg.mat", upto="conv3_1")
    return root


def train_args(root, photos, ckpt, *extra):
    return ["train", "--style", root / "style.png", "--train-path", root / photos, "--vgg-path", root / "vgg.mat",
            "--style-layers", "relu1_1,relu2_1", "--content-layer", "relu2_1", "--checkpoint-dir", ckpt,
            "--image-size", "16", "--batch-size", "2", "--workers", "0", "--no-compile", *extra]


def test_training_on_unreadable_pictures_exports_nothing(training, tmp_path):
    code, _, err = stylemirror(*train_args(training, "junk", tmp_path / "ckpt"))
    [line] = [line for line in err.splitlines() if line.startswith("stylemirror")]  # beside tqdm's bar
    assert code == 2 and "Traceback" not in err
    assert "none of its 3 pictures could be read" in line and "no model exported" in line
    assert not (tmp_path / "ckpt" / "model").exists() and not list((tmp_path / "ckpt").glob("ckpt_*"))


@pytest.mark.slow
def test_training_says_max_steps_is_beyond_epochs_keeps_user_files_and_modes(training, tmp_path, umask_027):
    ckpt, models = tmp_path / "ckpt", tmp_path / "models"
    models.mkdir()
    (models / "readme.txt").write_text("mine")  # beside the models: kept
    code, out, err = stylemirror(*train_args(training, "photos", ckpt, "--epochs", "1", "--max-steps", "40",
                                             "--model-dir", models))
    assert code == 0, err
    assert "1 steps" in out.splitlines()[0] and "--epochs 1 ends before --max-steps 40" in out.splitlines()[0]
    assert (models / "readme.txt").read_text() == "mine"
    info = json.loads((models / "model.json").read_text())
    assert info["epochs"] == 1 and info["epochs_trained"] == 1.0 and info["steps"] == 1
    for path in (ckpt / "ckpt_00000001.pt", ckpt / "losses.png", ckpt / "train_log.jsonl",
                 models / "model.safetensors", models / "model.onnx", models / "model.json", models / "ml5" / "Variable"):
        assert mode(path) == 0o640, path
    assert mode(models / "ml5") == 0o750
    # A resume rewrites the log; it keeps its mode, and the models are replaced: they are ours.
    code, out, err = stylemirror(*train_args(training, "photos", ckpt, "--epochs", "2", "--model-dir", models))
    assert code == 0, err
    assert out.startswith("resuming") and mode(ckpt / "train_log.jsonl") == 0o640
    info = json.loads((models / "model.json").read_text())
    assert info["steps"] == 2 and info["epochs_trained"] == 2.0


@pytest.mark.slow
def test_sigterm_during_a_video_leaves_no_temporary_file(tmp_path):
    formats.write_ml5(NET, tmp_path / "m")
    make_video(tmp_path / "long.mp4", frames=400, size=(64, 48), audio=False)
    (tmp_path / "out.mp4").write_bytes(b"old output")
    proc = subprocess.Popen([sys.executable, "-m", "stylemirror", "stylize", "--model", tmp_path / "m",
                             tmp_path / "long.mp4", "-o", tmp_path / "out.mp4", "--batch-size", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.mp4.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.mp4.*")), "the run never started writing"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "m", "out.mp4"]
    assert (tmp_path / "out.mp4").read_bytes() == b"old output"


def video_size(path):
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


@pytest.mark.parametrize("size,ext,max_size,want", [
    ((33, 25), ".mp4", None, (33, 25)),  # odd: 4:4:4 H.264, nothing cropped
    ((33, 25), ".webm", None, (33, 25)),
    ((64, 48), ".mp4", 21, (21, 16)),  # --max-size applies to videos too
])
def test_videos_keep_their_size_or_max_size(tmp_path, size, ext, max_size, want):
    with av.open(str(tmp_path / "in.mkv"), "w") as out:  # 4:4:4: an odd size as a camera or editor writes it
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv444p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.asarray(photo(size).rotate(180 * i)), format="rgb24")
            for packet in [*stream.encode(frame), *(stream.encode() if i else [])]:
                out.mux(packet)
    stylizer = Stylizer(NET, "cpu", Options(max_size=max_size))
    run(stylizer, [tmp_path / "in.mkv"], tmp_path / f"out{ext}")
    assert video_size(tmp_path / f"out{ext}") == want


def test_server_answers_404_to_an_overlong_name(tmp_path, capfd):
    srv = server.serve({"/": tmp_path})
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
        conn.request("GET", "/" + "a" * 300 + "/" + "b" * 5000)
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        srv.shutdown()
    assert "Traceback" not in capfd.readouterr().err


def test_mirror_index_leaves_out_models_with_nan_weights(user, capfd):
    folder = user / "models"
    formats.write_ml5(NET, folder / "good")
    formats.write_ml5(nan_net(), folder / "nan-ml5")
    formats.save_safetensors(nan_net(), folder / "nan.safetensors")
    m = mirror.Mirror([folder])
    listed = [e["name"] for e in json.loads(m.index()[1])["models"] if e["format"] != "painting"]
    assert listed == ["good"]
    assert capfd.readouterr().err.count("holds NaN or infinite values") == 2
    m.index()  # checked once per version of the files: said once
    assert capfd.readouterr().err == ""


def test_mirror_lists_what_sheet_shows(user, capfd):
    """A model that `stylize` and `sheet` cannot read (a short file, a missing variable, a bad
    manifest) is not listed either, with the same line; a good one is."""
    folder = user / "models"
    formats.write_ml5(NET, folder / "good")
    formats.write_ml5(NET, folder / "missing")
    next(p for p in (folder / "missing").iterdir() if p.name != "manifest.json").unlink()
    formats.write_ml5(NET, folder / "manifest")
    (folder / "manifest" / "manifest.json").write_text("{not json")
    formats.save_safetensors(NET, folder / "short.safetensors")
    (folder / "short.safetensors").write_bytes((folder / "short.safetensors").read_bytes()[:-100])
    listed = [e["name"] for e in json.loads(mirror.Mirror([folder]).index()[1])["models"] if e["format"] != "painting"]
    said = capfd.readouterr().err
    assert listed == ["good"] == [label for label, _ in sheet.entries([folder])]
    assert said.count("not listing a model") == 3 and "Traceback" not in said
    left_out = capfd.readouterr().err.splitlines()
    for name in ("missing", "manifest", "short.safetensors"):
        line = next(line for line in said.splitlines() if f"models/{name}" in line)
        assert line.split("not listing a model: ")[1] in "\n".join(left_out)


def test_page_refuses_nan_weights(browser, user):
    """The page's loaders refuse what `stylize` refuses. The files turn bad after the index
    listed them, so the loaders themselves are what is tested."""
    folder = user / "models"
    formats.write_ml5(NET, folder / "ml5model")
    formats.save_safetensors(NET, folder / "st.safetensors")
    srv = mirror.Mirror([folder]).serve(port=0)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/?model=st&camera=off&backend=wasm")
        page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)", timeout=90000)
        formats.write_ml5(nan_net(), folder / "ml5model")
        formats.save_safetensors(nan_net(), folder / "st.safetensors")
        load = "(url) => StyleNet.load(url).then((net) => { net.dispose(); return 'loaded'; }, (e) => e.message)"
        assert "holds NaN or infinite values" in page.evaluate(load, "models/ml5model/")
        assert "conv2.norm.scale holds NaN or infinite values" in page.evaluate(load, "models/st.safetensors")
        page.close()
    finally:
        srv.shutdown()


STYLIZER = Stylizer(NET, "cpu")


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=st.integers(1, 600), h=st.integers(1, 600), mode_=st.sampled_from(["RGB", "L", "RGBA", "P"]),
       ext=st.sampled_from([".png", ".jpg"]))
def test_any_size_and_mode_through_stylize_keeps_the_size(tmp_path, w, h, mode_, ext):
    rng = np.random.default_rng(w * 1000 + h)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode_)
    if ext == ".jpg" and mode_ in ("RGBA", "P"):
        ext = ".png"
    image.save(tmp_path / f"in{ext}")
    [dest] = run(STYLIZER, [tmp_path / f"in{ext}"], tmp_path / f"out{ext}")
    assert Image.open(dest).size == (w, h)


def test_page_stylizes_a_picture_chosen_while_the_style_loads(browser, tmp_path):
    formats.write_ml5(NET, tmp_path / "models" / "ours")
    srv = mirror.Mirror([tmp_path / "models"]).serve(port=0)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/?model=ours&camera=off&backend=wasm")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=90000)
        pending = page.evaluate("""async () => {
            document.getElementById('fps').textContent = '12.0 fps';  // as a camera run leaves it
            mirror.net.dispose();
            mirror.net = null;
            const loading = mirror.useModel('ours');
            const canvas = new OffscreenCanvas(23, 17);
            canvas.getContext('2d').fillRect(3, 3, 9, 9);
            const blob = await canvas.convertToBlob({ type: 'image/png' });
            await mirror.stylizePicture(new File([blob], 'chosen.png', { type: 'image/png' }));
            const pending = mirror.pendingPicture !== null;
            await loading;
            return pending;
        }""")
        assert pending
        page.wait_for_function("document.body.dataset.state === 'image-done'", timeout=60000)
        assert page.evaluate("[document.getElementById('output').width, document.getElementById('output').height]") == [23, 17]
        assert page.locator("#fps").inner_text() == "– fps"
        page.close()
    finally:
        srv.shutdown()


def test_permission_error_names_the_users_path(user, monkeypatch):
    from stylemirror import atomic

    def refuse(prefix, suffix, dir):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}tmp1234{suffix}")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    code, _, err = stylemirror("stylize", "--model", user / "model", user / "photo.jpg", "-o", user / "o.png")
    assert code == 2 and err.count("\n") == 1
    assert f"{user / 'o.png'}: cannot write here (Permission denied)" in err and "tmp1234" not in err
