"""`stylemirror train` end to end, on tiny pictures and generated VGG weights."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from helpers import photo, rows, run_ml5, snapshot, stylemirror, torchrun_train, train_args
from stylemirror import formats
from stylemirror.stylize import Options, Stylizer


@pytest.mark.slow
def test_training_writes_everything_and_the_loss_falls(workdir, tmp_path, browser, static_server):
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--epochs", "8", "--checkpoint-iterations", "10",
                                     "--log-interval", "2", "--learning-rate", "1e-2", "--style-weight", "1000",
                                     "--test", workdir / "test.png", "--test-dir", tmp_path / "previews",
                                     "--model-dir", tmp_path / "models"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("starting a fresh run: 7 pictures, 24 steps")
    assert f"skipping unreadable picture {workdir / 'photos' / 'broken.jpg'}" in result.stdout
    assert "skipped 1 unreadable files of 7" in result.stdout
    log = rows(ckpt)
    assert {"step", "epoch", "content", "style", "tv", "total", "images_per_s"} <= set(log[0])
    assert [r["step"] for r in log] == list(range(2, 25, 2))
    # Measured 0.67x (seeds 1-3: 0.54-0.82x); a network that learns nothing (--learning-rate
    # 1e-9) gives 0.94-1.14x over four seeds, the batches' own spread.
    assert np.mean([r["total"] for r in log[-3:]]) < 0.8 * np.mean([r["total"] for r in log[:2]])
    assert sorted(p.name for p in ckpt.glob("ckpt_*.pt")) == ["ckpt_00000010.pt", "ckpt_00000020.pt", "ckpt_00000024.pt"]
    assert Image.open(ckpt / "losses.png").size[0] > 300
    previews = sorted(p.name for p in (tmp_path / "previews").iterdir())
    assert previews == ["step_00000010.png", "step_00000020.png", "step_00000024.png"]
    assert Image.open(tmp_path / "previews" / previews[-1]).size == (40, 30)
    models = tmp_path / "models"
    info = json.loads((models / "model.json").read_text())
    assert info["steps"] == 24 and info["style_weight"] == 1000 and info["date"]
    a, b = formats.read_model(models / "ml5"), formats.read_model(models / "model.safetensors")
    assert all((x == y).all() for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert (models / "model.onnx").stat().st_size > 1e6
    assert log[-1]["unreadable"] == 1
    # The ml5 export of the trained model runs in real ml5.js and matches `stylemirror stylize`.
    picture = photo((48, 36))
    ml5_pixels = run_ml5(browser, static_server, tmp_path, models / "ml5", picture)[:36, :48]
    ours = np.asarray(Stylizer(formats.read_model(models / "ml5"), options=Options(edge_pad=0)).picture(picture))
    assert np.abs(ml5_pixels.astype(int) - ours.astype(int)).max() <= 2


@pytest.mark.slow
def test_a_run_script_for_the_original_runs_unchanged(workdir, tmp_path):
    """style.py's flags, in its spelling (`1.5e1`), with `stylemirror train` in its place."""
    result = stylemirror(*train_args(workdir, tmp_path / "c", "--content-weight", "1.5e1", "--checkpoint-iterations",
                                     "1000", "--batch-size", "3", "--tv-weight", "2e2", "--style-weight", "1e2",
                                     "--learning-rate", "1e-3", "--epochs", "1"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c" / "model" / "ml5" / "manifest.json").exists()


@pytest.mark.slow
def test_compiled_training_runs_and_saves_plain_weights(workdir, tmp_path):
    """torch.compile (what long runs use) trains, checkpoints and exports like the eager loop."""
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--compile", "--max-steps", "3", "--log-interval", "1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(np.isfinite(r["total"]) for r in rows(ckpt)) and len(rows(ckpt)) == 3
    import torch
    state = torch.load(ckpt / "ckpt_00000003.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"])  # loadable without torch.compile
    formats.read_model(ckpt / "model" / "model.safetensors")


@pytest.mark.slow
def test_checkpoints_and_resuming_leave_the_run_as_trained_straight_through(workdir, tmp_path):
    """A checkpoint (its live network, its preview) changes nothing in the training: a run
    checkpointed every step, and one stopped and resumed, end with the weights of one run
    straight through (a preempted run trains as if it never was)."""
    import torch

    def weights(name, *runs):
        ckpt = tmp_path / name
        for extra in runs:
            result = stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--test", workdir / "test.png",
                                             "--test-dir", tmp_path / f"{name}-previews", *extra))
            assert result.returncode == 0, result.stderr[-2000:]
        return formats.read_model(ckpt / "model" / "model.safetensors").state_dict()

    straight = weights("straight", ["--max-steps", "4"])
    for other in (weights("every-step", ["--max-steps", "4", "--checkpoint-iterations", "1"]),
                  weights("resumed", ["--max-steps", "2"], ["--max-steps", "4"])):
        assert all(torch.equal(straight[k], other[k]) for k in straight)


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_from_the_last_checkpoint(workdir, tmp_path):
    ckpt = tmp_path / "ckpt"
    args = [sys.executable, "-m", "stylemirror", *map(str, train_args(
        workdir, ckpt, "--epochs", "40", "--checkpoint-iterations", "3", "--log-interval", "1"))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (ckpt / "ckpt_00000006.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no chance to save anything
    proc.wait()
    done = sorted(int(p.stem.split("_")[1]) for p in ckpt.glob("ckpt_*.pt"))
    assert done and done[-1] >= 6
    result = stylemirror(*train_args(workdir, ckpt, "--epochs", "40", "--checkpoint-iterations", "3",
                                     "--log-interval", "1", "--max-steps", str(done[-1] + 3)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(f"resuming from {ckpt / f'ckpt_{done[-1]:08d}.pt'} (step {done[-1]} ")
    steps = [r["step"] for r in rows(ckpt)]
    assert steps == list(range(1, done[-1] + 4))  # nothing logged twice, nothing missing
    fresh = stylemirror(*train_args(workdir, ckpt, "--epochs", "1", "--fresh"))
    assert fresh.stdout.startswith("starting a fresh run")


@pytest.mark.slow
@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "Ctrl-C"])
def test_signal_saves_a_checkpoint_and_exits_cleanly(workdir, tmp_path, signum, status):
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "stylemirror", *map(str, train_args(
        workdir, ckpt, "--epochs", "100", "--checkpoint-iterations", "1000", "--log-interval", "1"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((ckpt / "train_log.jsonl").exists() and len(rows(ckpt)) >= 3) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    [saved] = ckpt.glob("ckpt_*.pt")
    assert f"stopped by {signum.name} at step {int(saved.stem.split('_')[1])}" in out


@pytest.mark.slow
@pytest.mark.parametrize("grid_weight", ["0", "1e7"])
def test_non_finite_loss_stops_with_last_good_checkpoint(workdir, tmp_path, grid_weight):
    """Without the grid term the loss turns non-finite; with it, a first step's gradients are
    large enough that Adam's lr x moment overflows the weights while the loss was finite. Either
    way the run stops in one line, and no checkpoint holds a non-finite weight."""
    import torch
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--epochs", "20", "--checkpoint-iterations", "1",
                                     "--learning-rate", "1e30", "--grid-weight", grid_weight))
    assert result.returncode == 2
    assert "non-finite" in result.stderr and "Traceback" not in result.stderr
    saved = sorted(ckpt.glob("ckpt_*.pt"))
    assert f"Last good checkpoint: {saved[-1] if saved else 'none yet'}." in result.stderr
    for path in saved:
        assert all(torch.isfinite(v).all() for v in torch.load(path, weights_only=True)["model"].values())


@pytest.mark.parametrize("change,message", [
    (lambda a, r: a.__setitem__(a.index("--train-path") + 1, r / "empty"), "no pictures found"),
    (lambda a, r: a.__setitem__(a.index("--style") + 1, r / "test.txt"), "test.txt: not a readable picture"),
    (lambda a, r: a.__setitem__(a.index("--vgg-path") + 1, r / "nope.mat"), "nope.mat: no such VGG weights file"),
    (lambda a, r: a.extend(["--batch-size", "0"]), "must be positive"),
    (lambda a, r: a.extend(["--style-layers", "relu9_9"]), "unknown VGG19 layer 'relu9_9'"),
])
def test_bad_input_is_one_line_exit_2(workdir, tmp_path, change, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "test.txt").write_text("hello")
    args = [str(a) for a in train_args(workdir, tmp_path / "c")]
    args = [str(tmp_path / "test.txt") if a == str(workdir / "style.png") and "style.png" in message else a for a in args]
    change(args, tmp_path)
    result = stylemirror(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_torchrun_two_processes_train_one_set_of_checkpoints(workdir, tmp_path):
    ckpt = tmp_path / "ckpt"
    result = torchrun_train(*train_args(workdir, ckpt, "--epochs", "4", "--checkpoint-iterations", "2",
                                        "--log-interval", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    # 7 readable pictures, 2 processes x batch 2 -> 1 step per epoch (broken file counted in the 8)
    assert sorted(p.name for p in ckpt.glob("ckpt_*.pt")) == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert [r["step"] for r in rows(ckpt)] == [1, 2, 3, 4]
    assert result.stdout.count("starting a fresh run") == 1
    assert (ckpt / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_lite_network_trains_and_exports_what_can_run_it(workdir, tmp_path):
    """--arch lite: the mirror's format and ONNX (ml5.js cannot run it, so no ml5 folder)."""
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "2", "--checkpoint-iterations", "1"))
    assert result.returncode == 0, result.stderr[-2000:]
    model = ckpt / "model"
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.onnx", "model.safetensors"]
    assert json.loads((model / "model.json").read_text())["arch"] == "lite"
    assert formats.read_model(model / "model.safetensors").arch == "lite"


def test_the_model_files_say_how_it_was_trained(workdir, tmp_path):
    """model.json and the safetensors metadata hold every field of the recipe (all that a resume
    compares, and more) with the run's value, as the checkpoint's config has it."""
    import torch

    from stylemirror.train import RECIPE, RECORDED, TrainConfig
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "1", "--seed", "7",
                                     "--crop-zoom", "1.5", "--style-size", "64", "--grid-weight", "3e6",
                                     "--stability-weight", "5000"))
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads(torch.load(ckpt / "ckpt_00000001.pt", weights_only=True)["config"])
    info = json.loads((ckpt / "model" / "model.json").read_text())
    meta = formats.stylemirror_metadata(ckpt / "model" / "model.safetensors")
    assert set(RECIPE) <= set(RECORDED) and {"grid_weight", "stability_weight", "crop_zoom", "seed", "style_size"} <= set(RECORDED)
    for name in RECORDED:
        key = TrainConfig.__dataclass_fields__[name].metadata.get("saved_as", name)
        assert info[key] == config[name] and meta[key] == str(config[name]), name
    assert (info["seed"], info["crop_zoom"], info["style_size"], info["grid_weight"], info["stability_weight"]) == (
        7, 1.5, 64, 3e6, 5000.0)
    assert info["arch"] == "lite" and info["trained_decoder"] == "resize" and info["style_layers"] == [
        "relu1_1", "relu2_1", "relu3_1"]
    assert info["steps"] == 1 and info["date"] and info["vgg"] == str(workdir / "vgg.mat")


@pytest.fixture(scope="module")
def lite_run(workdir, tmp_path_factory):
    """A lite run one step in, trained once for the resume tests (each copies it)."""
    ckpt = tmp_path_factory.mktemp("lite-run") / "ckpt"
    first = stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "1"))
    assert first.returncode == 0, first.stderr[-2000:]
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("change,named", [(["--arch", "lite", "--style-weight", "5"], "--style-weight 100.0 (now 5.0)"),
                                          (["--arch", "standard"], "--arch lite (now standard)"),
                                          (["--arch", "lite", "--decoder", "deconv3", "--encoder", "conv3"],
                                           "--decoder resize (now deconv3), --encoder blur (now conv3)"),
                                          (["--arch", "lite", "--grid-weight", "0"], "--grid-weight 10000000.0 (now 0.0)")])
def test_resuming_with_another_recipe_is_refused(workdir, lite_run, tmp_path, change, named):
    ckpt = shutil.copytree(lite_run, tmp_path / "ckpt")
    before = snapshot(ckpt)
    again = stylemirror(*train_args(workdir, ckpt, "--max-steps", "2", *change))
    assert again.returncode == 2 and named in again.stderr and "--fresh" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    assert snapshot(ckpt) == before  # the run left as it was


@pytest.mark.slow
def test_what_may_change_between_runs_does_not_stop_a_resume(workdir, lite_run, tmp_path):
    ckpt = shutil.copytree(lite_run, tmp_path / "ckpt")
    more = stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "2", "--epochs", "3"))
    assert more.returncode == 0 and more.stdout.startswith("resuming from"), more.stderr[-2000:]


@pytest.mark.slow
def test_a_style_picture_may_move_but_not_change(workdir, lite_run, tmp_path):
    ckpt = shutil.copytree(lite_run, tmp_path / "ckpt")
    (tmp_path / "moved").mkdir()
    shutil.copy(workdir / "style.png", tmp_path / "moved" / "style.png")
    args = [a if a != workdir / "style.png" else tmp_path / "moved" / "style.png"
            for a in train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "2")]
    Image.open(workdir / "style.png").rotate(90).save(tmp_path / "changed.png")
    changed = [a if a != tmp_path / "moved" / "style.png" else tmp_path / "changed.png" for a in args]
    before = snapshot(ckpt)
    refused = stylemirror(*changed)
    assert refused.returncode == 2 and "their content has changed" in refused.stderr, refused.stderr
    assert snapshot(ckpt) == before
    moved = stylemirror(*args)
    assert moved.returncode == 0 and moved.stdout.startswith("resuming from"), moved.stderr[-2000:]


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(workdir, lite_run, tmp_path):
    ckpt = shutil.copytree(lite_run, tmp_path / "ckpt")
    assert stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "2")).returncode == 0
    newest = ckpt / "ckpt_00000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a copy cut short
    again = stylemirror(*train_args(workdir, ckpt, "--arch", "lite", "--max-steps", "3"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ckpt_00000002.pt: cannot resume from this checkpoint" in again.stderr
    assert "resuming from the checkpoint before it" in again.stderr
    assert again.stdout.startswith(f"resuming from {ckpt / 'ckpt_00000001.pt'} (step 1 of 3")


def test_bf16_where_it_is_native_unless_told(monkeypatch):
    import torch

    from stylemirror import train
    from stylemirror.cli import build_parser
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.StepOptions.for_device(cpu, False).bf16
    assert not train.StepOptions.for_device(cpu, False, bf16=False).bf16
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert not train.StepOptions.for_device(cpu, False).bf16
    assert train.StepOptions.for_device(cuda, True) == train.StepOptions(bf16=True, compile=True)  # no channels_last
    args = build_parser().parse_args(["train", "--style", "s.jpg", "--checkpoint-dir", "c", "--no-bf16"])
    assert args.bf16 is False and "bf16" in train.TrainConfig.__dataclass_fields__


@pytest.mark.slow
def test_the_grid_term_is_on_and_the_steadiness_term_off_by_default_each_logged_and_counted_when_on(workdir, tmp_path):
    default = tmp_path / "default"
    result = stylemirror(*train_args(workdir, default, "--epochs", "1"))
    assert result.returncode == 0, result.stderr
    assert rows(default)[0]["grid"] > 0 and "stability" not in rows(default)[0]  # off: nothing to log
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--epochs", "1", "--log-interval", "1", "--stability-weight", "20000"))
    assert result.returncode == 0, result.stderr
    for row in rows(ckpt):
        assert row["stability"] > 0 and row["grid"] > 0
        parts = row["content"] + row["style"] + row["tv"] + row["grid"] + row["stability"]
        assert abs(row["total"] - parts) <= 1e-4 * row["total"]
    plain = tmp_path / "plain"
    off = stylemirror(*train_args(workdir, plain, "--epochs", "1", "--grid-weight", "0"))
    assert off.returncode == 0, off.stderr[-2000:]
    assert "stability" not in rows(plain)[0] and "grid" not in rows(plain)[0]


@pytest.mark.parametrize("name", ["grid_weight", "stability_weight", "tv_weight"])
def test_a_negative_or_nan_weight_from_python_is_refused_by_name(tmp_path, name):
    from stylemirror.errors import UserError
    from stylemirror.train import TrainConfig, check_config
    for bad in (-1.0, float("nan")):
        cfg = TrainConfig(style="s.jpg", checkpoint_dir=str(tmp_path), **{name: bad})
        with pytest.raises(UserError, match=f"--{name.replace('_', '-')} must be a number, 0 or more"):
            check_config(cfg)
