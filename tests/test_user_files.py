"""Bad input as a user or an attacker makes it: a model whose style names are paths, outputs
that would replace the user's own files or each other, pipes named like pictures, paddings
and blends past any sense. Every case: refused in one line (exit 2) or handled, the user's
files byte for byte as they were, and no hang (the CLI runs in a subprocess with a timeout
where a hang is what is tested)."""

import json
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import stylemirror
from helpers import multi_net, photo, random_net, snapshot
from stylemirror import formats, mirror, padding
from stylemirror.paths import style_name_problem
from stylemirror.stylize import Options, Stylizer

NET = random_net(seed=4)


def refused(result, message: str):
    code, _, err = result
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("stylemirror")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def multi_style_file(path, names):
    net = multi_net(styles=len(names))
    net.style_info = tuple({"name": name, "sha256": None} for name in names)
    formats.save_safetensors(net, path)


# ---------------------------------------------------------------- style names are never paths

@pytest.mark.parametrize("bad", ["../victim", "../../etc", "x/y", "a\\b", "a:b", "c,d", "", "..", " a", "tab\there"])
def test_a_model_whose_style_names_are_paths_is_refused_and_writes_nothing(tmp_path, bad):
    sandbox = tmp_path / "sandbox"
    (sandbox / "victim").mkdir(parents=True)
    (sandbox / "victim" / "Variable").write_bytes(b"the user's own file")
    multi_style_file(tmp_path / "ms.safetensors", [bad, "fine"])
    before = snapshot(tmp_path)
    refused(stylemirror("export", tmp_path / "ms.safetensors", "--format", "ml5", "-o", sandbox / "exp"),
            "is not a plain name")
    refused(stylemirror("stylize", "--model", tmp_path / "ms.safetensors", "--style", "fine",
                        tmp_path / "ms.safetensors", "-o", sandbox / "o.png"), "is not a plain name")
    assert snapshot(tmp_path) == before


def test_plain_style_names_pass_and_twice_the_same_is_named():
    assert all(style_name_problem(n) is None for n in ("udnie", "great_wave", "The Scream", "a.b", "été"))
    assert all(style_name_problem(n) for n in ("a/b", "..", "a..b", "a,b", "a:b", "\x00", " a", ""))


def test_a_model_that_names_one_style_twice_says_so(tmp_path):
    multi_style_file(tmp_path / "ms.safetensors", ["same", "same"])
    refused(stylemirror("export", tmp_path / "ms.safetensors", "--format", "ml5", "-o", tmp_path / "exp"),
            "names the style 'same' twice")


@pytest.mark.parametrize("name", ["c,d.png", "a:b.png"])
def test_training_refuses_a_style_picture_whose_name_cannot_be_selected(tmp_path, name):
    photo((32, 32)).save(tmp_path / name)
    (tmp_path / "photos").mkdir()
    photo((40, 30)).save(tmp_path / "photos" / "0.jpg")
    before = snapshot(tmp_path)
    refused(stylemirror("train", "--style", tmp_path / name, "--train-path", tmp_path / "photos",
                        "--checkpoint-dir", tmp_path / "run"), "is not a plain name")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- outputs never replace the user's files

def test_sheet_refuses_to_write_over_its_photo(tmp_path):
    formats.write_ml5(NET, tmp_path / "models" / "net")
    photo((40, 30)).save(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(stylemirror("sheet", tmp_path / "photo.png", "-o", tmp_path / "photo.png", "--models", tmp_path / "models"),
            "that is the photo itself")
    refused(stylemirror("sheet", tmp_path / "photo.png", "-o", tmp_path / "notes.txt", "--models", tmp_path / "models"),
            "unknown picture format")
    assert snapshot(tmp_path) == before


def user_model_dir(folder):
    """A --model-dir holding the user's own files under the names a run's export takes."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"my own onnx, not a stylemirror export")
    (folder / "model.json").write_text('{"mine": true}')
    (folder / "model.safetensors").write_bytes(b"my weights")
    return folder


@pytest.mark.parametrize("name", ["model.onnx", "model.json", "model.safetensors"])
def test_training_keeps_the_users_own_files_of_the_models_names(tmp_path, name):
    photo((32, 32)).save(tmp_path / "style.png")
    (tmp_path / "photos").mkdir()
    photo((40, 30)).save(tmp_path / "photos" / "0.jpg")
    models = tmp_path / "models"
    models.mkdir()
    (models / name).write_bytes(b"the user's own file")
    before = snapshot(tmp_path)
    refused(stylemirror("train", "--style", tmp_path / "style.png", "--train-path", tmp_path / "photos",
                        "--checkpoint-dir", tmp_path / "run", "--model-dir", models), f"{name} exists and is not")
    assert snapshot(tmp_path) == before


def foreign_onnx(path):
    """An ONNX model that stylemirror did not write: someone's classifier, say."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own future
        torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False,
                          input_names=["pixels"], output_names=["logits"])


def test_export_replaces_its_own_exports_and_with_force_other_models_and_nothing_else(tmp_path):
    formats.write_ml5(NET, tmp_path / "model")
    for fmt, out in (("ml5", "m"), ("onnx", "m.onnx"), ("safetensors", "m.safetensors")):
        for _ in range(2):  # the second replaces the first: told by content
            assert stylemirror("export", tmp_path / "model", "--format", fmt, "-o", tmp_path / out).returncode == 0
    assert formats.read_model(tmp_path / "m.safetensors").state_dict().keys() == NET.state_dict().keys()

    foreign_onnx(tmp_path / "classifier.onnx")
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "vgg.safetensors"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.txt").write_text("four years of work")
    (tmp_path / "fake.onnx").write_bytes(b"not onnx at all")
    before = snapshot(tmp_path)
    refused(stylemirror("export", tmp_path / "model", "--format", "onnx", "-o", tmp_path / "classifier.onnx"),
            "classifier.onnx is an ONNX model that stylemirror did not export")
    refused(stylemirror("export", tmp_path / "model", "--format", "safetensors", "-o", tmp_path / "vgg.safetensors"),
            "vgg.safetensors is a .safetensors model that stylemirror did not export")
    for force in ([], ["--force"]):  # --force never deletes what is not a model of that format
        refused(stylemirror("export", tmp_path / "model", "--format", "ml5", "-o", tmp_path / "home", *force),
                "home holds files that are not an ml5 model (thesis.txt)")
        refused(stylemirror("export", tmp_path / "model", "--format", "onnx", "-o", tmp_path / "fake.onnx", *force),
                "fake.onnx exists and is not an ONNX model")
    assert snapshot(tmp_path) == before
    for fmt, out in (("onnx", "classifier.onnx"), ("safetensors", "vgg.safetensors")):
        assert stylemirror("export", tmp_path / "model", "--format", fmt, "-o", tmp_path / out, "--force").returncode == 0
    assert formats.read_model(tmp_path / "vgg.safetensors").state_dict().keys() == NET.state_dict().keys()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("fmt, out, message", [
    ("onnx", "x.safetensors", "an ONNX model export needs a file name ending in .onnx"),
    ("safetensors", "x.onnx", "a .safetensors model export needs a file name ending in .safetensors"),
    ("ml5", "x.onnx", "an ml5 model folder export needs a folder, not a model file name"),
    ("onnx", "", "expected a path, got an empty one"),
])
def test_export_refuses_a_name_that_does_not_fit_its_format(tmp_path, fmt, out, message):
    formats.write_ml5(NET, tmp_path / "model")
    before = snapshot(tmp_path)
    refused(stylemirror("export", tmp_path / "model", "--format", fmt, "-o", tmp_path / out if out else ""), message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args", [["mirror", "--watch", "", "--no-browser"], ["stylize", "--model", "", "x.png", "-o", "y.png"],
                                  ["sheet", "x.png", "-o", ""]])
def test_an_empty_path_is_refused(args):
    refused(stylemirror(*args), "expected a path, got an empty one")


@pytest.fixture
def pictures(tmp_path):
    formats.write_ml5(NET, tmp_path / "model")
    for folder, size in (("a", (16, 12)), ("b", (20, 14))):
        (tmp_path / folder / "photos").mkdir(parents=True)
        photo(size).save(tmp_path / folder / "x.png")
        photo(size).save(tmp_path / folder / "photos" / f"{folder}.png")
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize("inputs, out, message", [
    (["a/x.png", "b/x.png"], "out", "would both be written to"),
    (["a/photos", "b/photos"], "out", "would both be mirrored into"),
    (["a/x.png", "b/photos"], "one.png", "several inputs need -o to be a folder, and one.png is a file name"),
    (["a/photos"], "one.png", "a folder needs -o to be a folder"),
])
def test_two_inputs_never_share_an_output(pictures, inputs, out, message):
    before = snapshot(pictures)
    refused(stylemirror("stylize", "--model", pictures / "model", *[pictures / i for i in inputs], "-o", pictures / out),
            message)
    assert snapshot(pictures) == before


def test_an_input_named_twice_is_stylized_once(pictures):
    code, out, err = stylemirror("stylize", "--model", pictures / "model", pictures / "a/x.png", pictures / "a/x.png",
                                 "-o", pictures / "out")
    assert code == 0, err
    assert out.splitlines() == [str(pictures / "out" / "x.png")]


# ---------------------------------------------------------------- no hangs, no unbounded work

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


def test_a_pipe_named_like_a_picture_is_refused_not_waited_on(tmp_path, fifo):
    formats.write_ml5(NET, tmp_path / "model")
    result = stylemirror("stylize", "--model", tmp_path / "model", fifo, "-o", tmp_path / "o.png", timeout=60)
    assert result.returncode == 2 and "not a regular file (a pipe, socket or device)" in result.stderr
    result = stylemirror("sheet", fifo, "-o", tmp_path / "s.png", "--models", tmp_path, timeout=60)
    assert result.returncode == 2 and "not a regular file" in result.stderr
    os.mkfifo(tmp_path / "clip.mp4")
    result = stylemirror("stylize", "--model", tmp_path / "model", tmp_path / "clip.mp4", "-o", tmp_path / "o.mp4",
                         timeout=60)
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_a_pipe_inside_a_model_folder_is_left_out_not_waited_on(tmp_path):
    formats.write_ml5(NET, tmp_path / "models" / "good")
    formats.write_ml5(NET, tmp_path / "models" / "piped")
    (tmp_path / "models" / "piped" / "Variable_3").unlink()
    os.mkfifo(tmp_path / "models" / "piped" / "Variable_3")
    os.mkfifo(tmp_path / "models" / "pipe.safetensors")
    photo((24, 16)).save(tmp_path / "photo.png")
    result = stylemirror("sheet", tmp_path / "photo.png", "-o", tmp_path / "s.png", "--models", tmp_path / "models", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "leaving out piped" in result.stderr and "1 styles beside the original" in result.stdout

    done = {}
    thread = threading.Thread(target=lambda: done.update(index=mirror.Mirror([tmp_path / "models"]).index()),
                              daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert "index" in done, "the mirror's index waited on a pipe"
    assert [m["name"] for m in json.loads(done["index"][1])["models"] if m["format"] != "painting"] == ["good"]


def test_the_edge_pad_is_bounded_by_the_picture(monkeypatch):
    seen = []
    stylizer = Stylizer(NET, options=Options(edge_pad=2000))
    real = stylizer.network
    monkeypatch.setattr(stylizer, "network", lambda x, *net: seen.append(tuple(x.shape[-2:])) or real(x, *net))
    small = stylizer.picture(photo((120, 80)))
    assert small.size == (120, 80) and seen[-1] == (240, 280)  # 80 a side, rounded up to 4
    assert np.array_equal(np.asarray(small), np.asarray(Stylizer(NET, options=Options(edge_pad=80)).picture(photo((120, 80)))))
    strip = stylizer.picture(Image.fromarray(np.full((1, 3000, 3), 128, np.uint8)))
    assert strip.size == (3000, 1) and seen[-1] == (4, 3004)  # 1 a side, rounded up to 4: not 97 rows
    assert padding.bounded(48, 1, 100000) == 1 and padding.bounded(48, 480, 640) == 48


# ---------------------------------------------------------------- silent wrong results, misleading lines

def test_blend_weights_past_a_float_are_refused(tmp_path):
    multi_style_file(tmp_path / "ms.safetensors", ["a", "b"])
    photo((16, 12)).save(tmp_path / "p.png")
    refused(stylemirror("stylize", "--model", tmp_path / "ms.safetensors", "--style", "a:1e308,b:1e308",
                        tmp_path / "p.png", "-o", tmp_path / "o.png"), "add up to more than a number can hold")
    assert not (tmp_path / "o.png").exists()


def test_training_with_no_style_layer_says_so_and_writes_nothing(tmp_path):
    photo((32, 32)).save(tmp_path / "style.png")
    (tmp_path / "photos").mkdir()
    photo((40, 30)).save(tmp_path / "photos" / "0.jpg")
    (tmp_path / "previews.png").write_bytes(b"a file")
    before = snapshot(tmp_path)
    args = ["train", "--style", tmp_path / "style.png", "--train-path", tmp_path / "photos", "--checkpoint-dir",
            tmp_path / "run"]
    refused(stylemirror(*args, "--style-layers", ","), "--style-layers: give at least one VGG19 layer")
    refused(stylemirror(*args, "--test", tmp_path / "style.png", "--test-dir", tmp_path / "previews.png"),
            "--test-dir")
    assert snapshot(tmp_path) == before


def test_a_float_tiff_in_0_to_1_is_not_black(tmp_path):
    grey = np.linspace(0, 1, 32 * 24, dtype=np.float32).reshape(24, 32)
    Image.fromarray(grey, mode="F").save(tmp_path / "float.tif")
    rgb, _ = Stylizer(NET, options=Options()).prepare(Image.open(tmp_path / "float.tif"))
    assert rgb.max() == 255 and abs(float(rgb.mean()) - 127.5) < 2


def test_an_animated_gif_says_only_its_first_frame_is_stylized(tmp_path):
    formats.write_ml5(NET, tmp_path / "model")
    frames = [photo((16, 12)), photo((16, 12)).rotate(180)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    code, _, err = stylemirror("stylize", "--model", tmp_path / "model", tmp_path / "anim.gif", "-o", tmp_path / "o.gif")
    assert code == 0 and "holds 2 frames; only the first is stylized" in err


def test_misleading_lines_now_say_what_to_pass(tmp_path):
    (tmp_path / "run" / "live").mkdir(parents=True)
    (tmp_path / "run" / "ckpt_00000004.pt").write_bytes(b"")
    photo((16, 12)).save(tmp_path / "p.png")
    refused(stylemirror("stylize", "--model", tmp_path / "run", tmp_path / "p.png", "-o", tmp_path / "o.png"),
            "a training's --checkpoint-dir, not a model; pass its model folder")
    refused(stylemirror("mirror", "--models", tmp_path / "p.png", "--no-browser"), "a file, not a folder")
    import pickle
    (tmp_path / "raw.pt").write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))
    code, _, err = stylemirror("stylize", "--model", tmp_path / "raw.pt", tmp_path / "p.png", "-o", tmp_path / "o.png")
    assert code == 2 and err.count("\n") == 1 and "UserWarning" not in err, err


def test_a_huge_batch_size_holds_no_more_than_a_tile_at_once(monkeypatch):
    stylizer = Stylizer(NET, options=Options(batch_size=10**9, max_pixels=4 * 160 * 120, edge_pad=0))
    seen = []
    real = stylizer.network
    monkeypatch.setattr(stylizer, "network", lambda x, *net: seen.append(x.shape[0]) or real(x, *net))
    frames = [np.asarray(photo((160, 120)).rotate(i)) for i in range(10)]
    outs = stylizer.frames(frames)
    assert seen == [4, 4, 2] and len(outs) == 10
    assert np.array_equal(outs[9], stylizer.frames(frames[9:])[0])  # batching changes no frame


@pytest.mark.slow
def test_audio_the_container_cannot_hold_is_re_encoded(tmp_path):
    import av

    from helpers import make_video

    formats.write_ml5(NET, tmp_path / "model")
    make_video(tmp_path / "clip.mp4", frames=6, size=(32, 24))  # AAC audio
    for src, dest, codec in (("clip.mp4", "clip.webm", "opus"), ("clip.webm", "back.mov", "aac"),
                             ("clip.mp4", "same.mkv", "aac")):
        code, _, err = stylemirror("stylize", "--model", tmp_path / "model", tmp_path / src, "-o", tmp_path / dest)
        assert code == 0, err
        with av.open(str(tmp_path / dest)) as video:
            assert video.streams.audio[0].codec_context.name == codec
            assert abs(video.duration / 1e6 - 0.6) < 0.2  # 6 frames at 10 fps, and the sound beside them


@pytest.mark.slow
def test_a_temporary_that_kill_9_left_is_removed_by_the_next_run(tmp_path):
    import signal
    import time

    from helpers import make_video

    formats.write_ml5(NET, tmp_path / "m")
    make_video(tmp_path / "long.mp4", frames=400, size=(64, 48), audio=False)
    (tmp_path / ".out.mp4.tmp1-notes").write_text("a live process's temporary: pid 1 is alive")
    proc = subprocess.Popen([sys.executable, "-m", "stylemirror", "stylize", "--model", tmp_path / "m",
                             tmp_path / "long.mp4", "-o", tmp_path / "out.mp4", "--batch-size", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob(".out.mp4.*"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    left = sorted(p.name for p in tmp_path.glob(".out.mp4.*"))
    assert len(left) == 2, "the killed run left no temporary to clean"
    photo((16, 12)).save(tmp_path / "p.png")
    code, _, err = stylemirror("stylize", "--model", tmp_path / "m", tmp_path / "long.mp4", "-o", tmp_path / "out.mp4",
                               "--max-size", "16")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob(".out.mp4.*")) == [".out.mp4.tmp1-notes"]


def test_a_crop_size_past_any_memory_is_refused_by_its_flag(tmp_path):
    refused(stylemirror("train", "--style", tmp_path / "s.png", "--checkpoint-dir", tmp_path / "run", "--image-size",
                        "100000"), "--image-size: must be between 1 and 4096 pixels")
    assert not (tmp_path / "run").exists()
