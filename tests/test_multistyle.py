"""Many styles in one network (conditional instance norm): training, files, selection and blends."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (NAMES, canvas_pixels, fake_camera, launch, multi_net, open_page, photo, random_net, rows, run_ml5,
                     stylemirror, train_args)
from stylemirror import formats
from stylemirror.errors import UserError
from stylemirror.network import InferenceNet, TransformNet
from stylemirror.stylize import Options, Stylizer, pick_style, style_weights


def one_hot(i, n=3):
    return torch.eye(n)[i]


def test_one_style_keeps_todays_parameters():
    single, multi = TransformNet().state_dict(), TransformNet(styles=4).state_dict()
    assert list(single) == list(multi)
    for key, value in single.items():
        if key.endswith(("norm.scale", "norm.shift")):
            assert value.shape == (value.shape[0],) and multi[key].shape == (4, value.shape[0])
        else:
            assert multi[key].shape == value.shape  # every conv shared


def test_selection_is_the_styles_own_and_a_blend_lies_between():
    net = multi_net()
    x = torch.from_numpy(np.array(photo((48, 40)))).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        alone = [net(x, one_hot(i)) for i in range(3)]
        picked = [net.select(one_hot(i))(x) for i in range(3)]
        blend = net.select(torch.tensor([0.5, 0.5, 0.0]))(x)
    for a, b in zip(alone, picked):
        assert torch.equal(a, b)
    assert (alone[0] - alone[1]).abs().mean() > 10  # the styles really differ
    gap = (alone[0] - alone[1]).abs().mean()
    assert (blend - alone[0]).abs().mean() < gap and (blend - alone[1]).abs().mean() < gap
    with pytest.raises(ValueError, match="3 styles"):
        net(x)


def test_each_style_is_its_name_and_its_selection():
    net = multi_net()
    x = torch.from_numpy(np.array(photo((48, 40)))).permute(2, 0, 1)[None].float()
    styles = list(net.each_style())
    assert [name for name, _ in styles] == list(NAMES)
    with torch.no_grad():
        for i, (_, single) in enumerate(styles):
            assert single.styles == 1 and torch.equal(single(x), net(x, one_hot(i)))
    unnamed = TransformNet(styles=2)
    assert [name for name, _ in unnamed.each_style()] == ["style1", "style2"] == unnamed.style_names
    solo = TransformNet()
    assert list(solo.each_style()) == [("", solo)]


def test_style_weights_parse_and_refuse():
    names = list(NAMES)
    assert style_weights("brick", names) == [0, 1, 0]
    assert style_weights("udnie:3, grass:1", names) == [0.75, 0, 0.25]
    for bad, why in [("wave", "no style 'wave'"), ("udnie:x", "expected NAME"), ("udnie:-1", "expected NAME"),
                     ("udnie:nan", "expected NAME"), ("udnie:inf", "expected NAME"), (":1", "expected NAME"),
                     ("udnie,brick", "expected NAME"), ("udnie:0,brick:0", "add up to 0"),
                     ("udnie:1,udnie:2", "given twice")]:
        with pytest.raises(UserError, match=why) as e:
            style_weights(bad, names)
        assert "udnie, brick, grass" in str(e.value)  # every error lists the styles


def test_pick_style_by_name_and_blend():
    net = multi_net()
    picture = photo((40, 32))
    by_name = Stylizer(pick_style(net, "brick"), options=Options(edge_pad=0)).picture(picture)
    with torch.no_grad():
        direct = net(torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float(), one_hot(1))
    assert np.abs(np.asarray(by_name).astype(int) - direct[0].permute(1, 2, 0).round().numpy()).max() <= 1
    # A "blend" of one style is that style exactly.
    assert torch.equal(pick_style(net, "brick:1,udnie:0").conv1.norm.scale, net.conv1.norm.scale[1])
    with pytest.raises(UserError, match=r"holds 3 styles \(udnie, brick, grass\)"):
        pick_style(net, None)
    with pytest.raises(UserError, match="holds one style"):
        pick_style(TransformNet(), "udnie")


def test_safetensors_records_the_styles_and_loads_them(tmp_path):
    net = multi_net()
    formats.save_safetensors(net, tmp_path / "m.safetensors")
    meta = formats.stylemirror_metadata(tmp_path / "m.safetensors")
    assert [r["name"] for r in json.loads(meta["styles"])] == list(NAMES)
    loaded = formats.read_model(tmp_path / "m.safetensors")
    assert loaded.styles == 3 and loaded.style_names == list(NAMES)
    x = torch.rand(1, 3, 36, 28) * 255
    with torch.no_grad():
        assert (loaded(x, one_hot(2)) - net(x, one_hot(2))).abs().max() < 1e-3


def test_bench_flicker_measures_each_style_of_a_multi_style_model(tmp_path, monkeypatch):
    from stylemirror.bench import flicker

    net = multi_net(styles=2)
    formats.save_safetensors(net, tmp_path / "duo.safetensors")
    seen = {}
    def fake_bench(stylizers, **_):
        seen.update(stylizers)
        scores = dict.fromkeys(("flicker", "still", "pan", "zoom", "pan_warp"), 0.5)
        return {name: {**scores, "glued": dict.fromkeys(("flicker", "pan", "zoom"), 0.4)} for name in stylizers}
    monkeypatch.setattr(flicker, "bench_flicker", fake_bench)
    result = flicker.models_flicker([str(tmp_path / "duo.safetensors")])
    assert list(seen) == ["duo:udnie", "duo:brick"] and list(result["models"]) == list(seen)
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        for i, name in enumerate(seen):
            assert (seen[name].net(x) - net(x, one_hot(i, 2))).abs().max() < 1e-3, name


def test_onnx_takes_the_style_weights(tmp_path):
    import onnxruntime

    net = multi_net()
    session = onnxruntime.InferenceSession(formats.onnx_bytes(net))
    assert [i.name for i in session.get_inputs()] == ["image", "style"]
    x = torch.rand(2, 3, 40, 36) * 255
    for weights in (one_hot(0), one_hot(2), torch.tensor([0.2, 0.3, 0.5])):
        theirs = session.run(None, {"image": x.numpy(), "style": weights.numpy()})[0]
        with torch.no_grad():
            ours = net(x, weights).numpy()
        assert np.abs(theirs - ours).max() < 0.05
    with torch.no_grad():  # the inference form agrees with the network for a blend too
        assert (InferenceNet(net)(x, one_hot(1)) - net(x, one_hot(1))).abs().max() < 0.05


def test_ml5_export_writes_one_standard_folder_per_style(tmp_path):
    net = multi_net()
    formats.write_ml5(net, tmp_path / "ml5")
    assert sorted(p.name for p in (tmp_path / "ml5").iterdir()) == sorted(NAMES)
    assert formats.is_ml5_output(tmp_path / "ml5")
    x = torch.rand(1, 3, 32, 32) * 255
    for i, name in enumerate(NAMES):
        folder = formats.read_ml5(tmp_path / "ml5" / name)
        assert folder.styles == 1
        with torch.no_grad():
            assert (folder(x) - net(x, one_hot(i))).abs().max() < 1e-2


def test_per_style_ml5_export_matches_real_ml5(browser, static_server, tmp_path):
    net = multi_net(styles=2)
    formats.write_ml5(net, tmp_path / "exported")
    picture = photo((48, 40))
    for i, name in enumerate(NAMES[:2]):
        shutil.rmtree(tmp_path / "model", ignore_errors=True)  # run_ml5 serves its copy from there
        ml5_pixels = run_ml5(browser, static_server, tmp_path, tmp_path / "exported" / name, picture)
        ours = np.asarray(Stylizer(net.select(one_hot(i, 2)), options=Options(edge_pad=0)).picture(picture))
        diff = np.abs(ml5_pixels[:40, :48].astype(int) - ours.astype(int))
        assert diff.max() <= 2, f"{name}: max difference {diff.max()} levels"
        assert ours.std() > 5


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def styles(workdir):
    import skimage.data

    paths = []
    for name in ("brick", "grass"):
        path = workdir / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((64, 64)).save(path)
        paths.append(path)
    return paths


def multi_args(workdir, styles, ckpt, *extra):
    args = train_args(workdir, ckpt, *extra)
    return [*args[:2], styles[0], "--style", styles[1], *args[3:]]


@pytest.mark.slow
def test_training_cycles_the_styles_and_writes_every_format(workdir, styles, tmp_path):
    ckpt = tmp_path / "ckpt"
    # One step trains the first style only: the second's norm rows stay as initialised.
    first = stylemirror(*multi_args(workdir, styles, ckpt, "--max-steps", "1", "--checkpoint-iterations", "1",
                                    "--log-interval", "1", "--learning-rate", "1e-2"))
    assert first.returncode == 0, first.stderr
    state = torch.load(ckpt / "ckpt_00000001.pt", weights_only=True)["model"]
    scale = state["conv1.norm.scale"]
    assert scale.shape == (2, 32)
    assert not torch.equal(scale[0], torch.ones(32)) and torch.equal(scale[1], torch.ones(32))

    # Resumed, the cycle goes on with the second style.
    more = stylemirror(*multi_args(workdir, styles, ckpt, "--max-steps", "4", "--checkpoint-iterations", "1",
                                   "--log-interval", "1", "--learning-rate", "1e-2"))
    assert more.returncode == 0, more.stderr
    assert "resuming from" in more.stdout
    state = torch.load(ckpt / "ckpt_00000002.pt", weights_only=True)["model"]
    assert not torch.equal(state["conv1.norm.scale"][1], torch.ones(32))
    assert [r["step"] for r in rows(ckpt)] == [1, 2, 3, 4]

    model = ckpt / "model"
    meta = formats.stylemirror_metadata(model / "model.safetensors")
    assert json.loads(meta["styles"]) == [{"name": p.stem, "sha256": sha256(p)} for p in styles]
    assert sorted(p.name for p in (model / "ml5").iterdir()) == ["brick", "grass"]
    net = formats.read_model(model / "model.safetensors")
    for i, name in enumerate(["brick", "grass"]):
        alone = formats.read_model(model / "ml5" / name)
        assert all((a - b).abs().max() < 1e-4 for a, b in zip(alone.state_dict().values(),
                                                             net.select(one_hot(i, 2)).plain().state_dict().values()))
    import onnxruntime
    assert [i.name for i in onnxruntime.InferenceSession(str(model / "model.onnx")).get_inputs()] == ["image", "style"]

    # The styles are part of the recipe: other ones (or fewer) are refused on resuming.
    other = stylemirror(*train_args(workdir, ckpt, "--max-steps", "6", "--learning-rate", "1e-2"))
    assert other.returncode == 2 and "was trained with --style brick, grass (now style):" in other.stderr

    # stylize by name, by blend, and the one-line errors.
    out = tmp_path / "out"
    out.mkdir()
    src = workdir / "test.png"
    for spec, dest in [("brick", "brick.png"), ("grass", "grass.png"), ("brick:1,grass:0", "onehot.png"),
                       ("brick:0.5,grass:0.5", "half.png")]:
        result = stylemirror("stylize", src, "--model", model, "--style", spec, "-o", out / dest)
        assert result.returncode == 0, result.stderr
    pictures = {p.stem: np.asarray(Image.open(p)).astype(int) for p in out.iterdir()}
    assert np.array_equal(pictures["onehot"], pictures["brick"])
    gap = np.abs(pictures["brick"] - pictures["grass"]).mean()
    assert gap > 0
    assert np.abs(pictures["half"] - pictures["brick"]).mean() < gap > np.abs(pictures["half"] - pictures["grass"]).mean()
    for spec, why in [(None, "holds 2 styles (brick, grass)"), ("wave", "no style 'wave' (this model's styles: brick, grass)"),
                      ("brick:", "expected NAME")]:
        result = stylemirror("stylize", src, "--model", model, *(["--style", spec] if spec else []), "-o", out / "x.png")
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and why in result.stderr, result.stderr


def test_two_styles_of_one_name_are_refused(workdir, tmp_path):
    (tmp_path / "a").mkdir()
    Image.open(workdir / "style.png").save(tmp_path / "a" / "style.png")
    args = train_args(workdir, tmp_path / "ckpt", "--max-steps", "1")
    result = stylemirror(*args[:2], tmp_path / "a" / "style.png", "--style", *args[2:])
    assert result.returncode == 2 and "two style pictures named style" in result.stderr


@pytest.fixture(scope="module")
def still_camera(playwright, tmp_path_factory):
    """Chromium whose fake camera shows one still photo: every frame is the same, so the
    page's output can be compared with `stylize` on the frame it shows beside it."""
    from stylemirror.bench import write_y4m

    y4m = tmp_path_factory.mktemp("camera") / "still.y4m"
    write_y4m(y4m, photo((320, 240)), frames=1)
    context = launch(playwright, tmp_path_factory.mktemp("profile"), fake_camera(y4m))
    yield context
    context.close()


@pytest.fixture
def duo_url(tmp_path):
    """The mirror serving a two-style model (udnie, brick) and a single-style one."""
    from stylemirror import mirror

    folder = tmp_path / "models"
    folder.mkdir()
    formats.save_safetensors(multi_net(styles=2), folder / "duo.safetensors")
    formats.save_safetensors(random_net(seed=4), folder / "solo.safetensors")
    srv = mirror.Mirror([folder]).serve(port=0)
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


@pytest.mark.parametrize("styles", ['{"a": 1}', '[{"nom": "a"}]', "[1, 2, 3]", "not json", "7"])
def test_damaged_style_names_are_refused_on_loading_and_left_out_of_the_list(tmp_path, styles, capfd):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from stylemirror import mirror

    formats.save_safetensors(multi_net(styles=3), tmp_path / "trio.safetensors")
    with safe_open(tmp_path / "trio.safetensors", "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    save_file(tensors, tmp_path / "trio.safetensors", metadata={**meta, "styles": styles})
    with pytest.raises(UserError, match='"styles" metadata is damaged'):
        formats.read_model(tmp_path / "trio.safetensors")
    formats.save_safetensors(random_net(seed=4), tmp_path / "solo.safetensors")
    entries = [e for e in json.loads(mirror.Mirror([tmp_path]).index()[1])["models"] if e["format"] != "painting"]
    assert [e["name"] for e in entries] == ["solo"]  # as `sheet` and `stylize` leave it out
    assert 'not listing a model' in (said := capfd.readouterr().err) and '"styles" metadata is damaged' in said


def test_the_model_list_says_how_many_styles_a_model_holds(tmp_path):
    from stylemirror import mirror

    formats.save_safetensors(multi_net(styles=3), tmp_path / "trio.safetensors")
    formats.save_safetensors(random_net(seed=4), tmp_path / "solo.safetensors")
    entries = {e["name"]: e for e in json.loads(mirror.Mirror([tmp_path]).index()[1])["models"]}
    assert entries["trio"]["label"] == "trio (3 styles)" and "label" not in entries["solo"]


def test_page_blends_the_styles_live_on_the_camera(still_camera, duo_url):
    net = multi_net(styles=2)
    page = open_page(still_camera, f"{duo_url}?model=duo&backend=wasm&size=160x120")
    assert page.evaluate("window.mirror.net.styles") == ["udnie", "brick"]
    assert page.locator("#styles-panel button").all_inner_texts() == ["udnie", "brick"]

    def settled_frame(action):
        """Run `action`, then the output of a frame stylized wholly after it, and its camera frame."""
        action()
        start = page.evaluate("window.mirror.frames")
        page.wait_for_function(f"window.mirror.frames >= {start + 2}", timeout=120000)
        return canvas_pixels(page, "output").astype(int), canvas_pixels(page, "camera-view")

    def python(weights, camera):
        return Stylizer(net.select(weights), options=Options(edge_pad=0)).frames([camera])[0].astype(int)

    udnie, camera = settled_frame(lambda: page.evaluate("window.mirror.setBlend({udnie: 1})"))
    assert camera.std() > 10
    assert np.abs(udnie - python([1.0, 0.0], camera)).max() <= 2
    brick, camera = settled_frame(lambda: page.click("#styles-panel button[data-index='1']"))
    assert page.evaluate("window.mirror.blend") == {"udnie": 0, "brick": 1}
    assert page.get_attribute("#styles-panel button[data-index='1']", "aria-pressed") == "true"
    assert np.abs(brick - python([0.0, 1.0], camera)).max() <= 2
    gap = np.abs(udnie - brick).mean()
    assert gap > 10  # the two styles paint clearly different pictures
    tensors = page.evaluate("tf.memory().numTensors")
    half, camera = settled_frame(lambda: page.evaluate("window.mirror.setBlend({udnie: 2, brick: 2})"))
    assert page.evaluate("window.mirror.blend") == {"udnie": 0.5, "brick": 0.5}
    assert np.abs(half - python([0.5, 0.5], camera)).max() <= 2
    assert np.abs(half - udnie).mean() > 1 and np.abs(half - brick).mean() > 1  # the blend changes the picture
    # The sliders blend too; a blend swaps the norms' tensors without leaking any.
    page.locator("#styles-panel input[data-index='0']").fill("0.25")
    assert page.evaluate("window.mirror.blend") == {"udnie": pytest.approx(1 / 3), "brick": pytest.approx(2 / 3)}
    settled_frame(lambda: None)
    assert page.evaluate("tf.memory().numTensors") == tensors
    error = page.evaluate("(() => { try { window.mirror.setBlend({wave: 1}); } catch (e) { return e.message; } })()")
    assert 'no style "wave"' in error and "udnie, brick" in error
    assert not page.errors
    page.close()

    solo = open_page(still_camera, f"{duo_url}?model=solo&backend=wasm&size=160x120&camera=off")
    assert solo.locator("#styles-panel").is_hidden() and solo.evaluate("window.mirror.blend") is None
    solo.close()
    # ?style= takes `stylize --style`'s syntax.
    started = open_page(still_camera, f"{duo_url}?model=duo&backend=wasm&camera=off&style=udnie:1,brick:3")
    assert started.evaluate("window.mirror.blend") == {"udnie": 0.25, "brick": 0.75}
    started.close()


def test_a_picture_on_show_follows_the_blend_and_the_model(still_camera, duo_url, tmp_path):
    """In picture mode a new blend, or another model, stylizes the picture on show again."""

    net = multi_net(styles=2)
    picture = photo((61, 45))
    picture.save(tmp_path / "picture.png")
    page = open_page(still_camera, f"{duo_url}?model=duo&backend=wasm&camera=off&style=udnie")

    def stylized(count, action):
        action()
        page.wait_for_function(f"window.mirror.pictures >= {count} && document.body.dataset.state === 'image-done'",
                               timeout=120000)
        return canvas_pixels(page, "output").astype(int)

    def python(model):
        return np.asarray(Stylizer(model).picture(picture)).astype(int)

    udnie = stylized(1, lambda: page.set_input_files("#image-input", str(tmp_path / "picture.png")))
    assert np.abs(udnie - python(net.select([1.0, 0.0]))).max() <= 3
    brick = stylized(2, lambda: page.click("#styles-panel button[data-index='1']"))
    assert np.abs(brick - python(net.select([0.0, 1.0]))).max() <= 3 and np.abs(brick - udnie).mean() > 10
    solo = stylized(3, lambda: page.select_option("#model-select", "solo"))
    assert np.abs(solo - python(formats.read_model(tmp_path / "models" / "solo.safetensors"))).max() <= 3
    assert not page.errors
    page.close()


@pytest.mark.slow
def test_bench_quality_styles_runs_at_tiny_settings(workdir, tmp_path):
    from helpers import ML5_MODELS, SHARED
    from stylemirror.bench.quality import style_picture

    photo((64, 48)).save(tmp_path / "photo.png")
    styles = ["brick", str(workdir / "style.png")]
    # Through the command line, as a user runs it (its JSON on the last line).
    ran = stylemirror("bench", "quality", "--styles", *styles, "--photo", tmp_path / "photo.png",
                      "--vgg-path", workdir / "vgg.mat", "--out", tmp_path / "out", "--steps", "1",
                      "--image-size", "32", "--batch-size", "2", "--json")
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["multi_steps"] == 2 and list(result["styles"]) == ["brick", "style"]
    for r in result["styles"].values():
        assert r["ratio"] == pytest.approx(r["style_score"] / r["single_style_score"]) and r["style_score"] > 0
        assert list(r["style_distance"]) == ["photo", "multi", "single", "arbitrary"], r
    # Each style's distances are to its own picture: the arbitrary network paints each differently.
    assert len({r["style_distance"]["arbitrary"] for r in result["styles"].values()}) == 2
    assert len({r["style_distance"]["photo"] for r in result["styles"].values()}) == 2
    assert "style distance to each style picture" in ran.stdout and "the multi-style network" in ran.stdout
    assert result["worst_ratio"] == max(r["ratio"] for r in result["styles"].values())
    # Top row: the photo, each style, the blend; bottom row: the photo and each single-style network.
    assert Image.open(tmp_path / "out" / "quality-styles.png").size == (64 * 4, 48 * 2)
    assert formats.read_model(tmp_path / "out" / "quality-styles.safetensors").style_names == ["brick", "style"]
    assert json.loads((tmp_path / "out" / "quality-styles.json").read_text())["blend"] == {"brick": 0.5, "style": 0.5}
    with pytest.raises(UserError, match="not a picture, an ml5 model"):
        style_picture("no-such-style", tmp_path, SHARED)
    if (ML5_MODELS / "wave" / "manifest.json").exists():  # a photo rendered by ml5's wave model
        rendered = np.asarray(Image.open(style_picture("wave", tmp_path / "styles", SHARED)))
        assert rendered.shape == (256, 256, 3) and rendered.std() > 10


@pytest.mark.slow
def test_export_cli_writes_and_replaces_per_style_folders(tmp_path):
    formats.save_safetensors(multi_net(styles=2), tmp_path / "duo.safetensors")
    for _ in range(2):  # the second replaces the first: a previous export of the same kind
        result = stylemirror("export", tmp_path / "duo.safetensors", "--format", "ml5", "-o", tmp_path / "out")
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["brick", "udnie"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = stylemirror("export", tmp_path / "duo.safetensors", "--format", "ml5", "-o", tmp_path / "mine")
    assert result.returncode == 2 and "refusing to replace" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
