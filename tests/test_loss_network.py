"""The loss network and the losses, against hand-computed values."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import SHARED, make_torchvision_vgg, make_vgg_mat
from stylemirror import loss_network, server
from stylemirror.errors import UserError
from stylemirror.loss_network import PerceptualLoss, gram


def test_gram_by_hand():
    # Channel 0 = [[1, 2], [3, 4]], channel 1 = [[0, 1], [1, 0]]: F F^T = [[30, 5], [5, 2]], / (C H W = 8)
    f = torch.tensor([[[[1.0, 2], [3, 4]], [[0, 1], [1, 0]]]])
    assert torch.allclose(gram(f), torch.tensor([[[3.75, 0.625], [0.625, 0.25]]]))


class Identity(torch.nn.Module):
    """A stand-in loss network whose 'layers' are the picture itself and its first channel."""

    def forward(self, x, upto=None):
        return {"a": x, "b": x[:, :1]}


def test_losses_by_hand():
    style = torch.tensor([[[[1.0, 2], [3, 4]], [[0, 1], [1, 0]], [[2, 2], [2, 2]]]])  # (1, 3, 2, 2)
    loss = PerceptualLoss(Identity(), style, content_layer="a", style_layers=("a", "b"),
                          content_weight=2.0, style_weight=3.0, tv_weight=5.0)
    content = torch.zeros(1, 3, 2, 2)
    y = torch.tensor([[[[1.0, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]]])
    out = loss(y, content)
    # content: one pixel differs by 1 out of 12 values -> mean 1/12
    assert out["content"].item() == pytest.approx(2.0 * 1 / 12)
    # style layer a: G(y) has a single 1/12 at [0, 0]; G(s) = S S^T / 12
    s = style.reshape(3, 4)
    gs = (s @ s.T) / 12
    gy = torch.zeros(3, 3)
    gy[0, 0] = 1 / 12
    layer_a = ((gy - gs) ** 2).sum() / 9
    # layer b: channel 0 only, C H W = 4: G(y) = 1/4, G(s) = 30/4
    layer_b = (0.25 - 7.5) ** 2
    assert out["style"].item() == pytest.approx(3.0 * (layer_a.item() + layer_b), rel=1e-5)
    # tv: horizontal differences: 2 rows x 1 x 3 channels = 6 values, one of them 1 -> 1/6; vertical the same
    assert out["tv"].item() == pytest.approx(5.0 * (1 / 6 + 1 / 6))
    assert out["total"].item() == pytest.approx(sum(out[k].item() for k in ("content", "style", "tv")))


def test_grid_loss_is_the_energy_at_the_grids_frequencies_and_nothing_else():
    # Parseval, in float64: the phase means' variance is the spectrum at the 15 non-zero
    # multiples of 1/4 cycle per pixel, over (H W)^2; rows and columns past a multiple of 4 are left out.
    y = torch.rand(2, 3, 26, 21, dtype=torch.float64) * 255
    spectrum = torch.fft.fft2(y[..., :24, :20]).abs() ** 2
    at_grid = spectrum[..., ::6, ::5].sum(dim=(-2, -1)) - spectrum[..., 0, 0]  # 24 / 4 and 20 / 4 bins apart
    assert loss_network.grid_loss(y).item() == pytest.approx((at_grid / (24 * 20) ** 2).mean().item(), rel=1e-9)
    # A 4-pixel grid of +-2 levels on a flat picture: its whole energy, 4 levels^2 (each
    # channel's phases are +-2); stripes of 3 and 6 pixels (other frequencies) leave it at 0.
    rows = torch.arange(24, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(24, dtype=torch.float64).view(1, -1)
    grid = 2 * torch.where((rows % 4 < 2) ^ (cols % 2 == 0), 1.0, -1.0).double()
    stripes = 30 * torch.cos(2 * torch.pi * cols / 3) + 20 * torch.sin(2 * torch.pi * rows / 6)
    assert loss_network.grid_loss((100 + grid).expand(1, 3, 24, 24)).item() == pytest.approx(4.0)
    assert loss_network.grid_loss((100 + stripes).expand(1, 3, 24, 24)).item() == pytest.approx(0.0, abs=1e-9)
    assert loss_network.grid_loss((100 + stripes + grid).expand(1, 3, 24, 24)).item() == pytest.approx(4.0)


def test_the_grid_term_is_off_unless_weighted_and_then_counts_in_the_total():
    style, content = torch.rand(1, 3, 8, 8) * 255, torch.rand(1, 3, 8, 8) * 255
    y = torch.rand(1, 3, 8, 8) * 255
    loss = PerceptualLoss(Identity(), style, "a", ("a",))
    assert "grid" not in loss_network.ExtraTerms().add_to(loss(y, content), None, content, y)
    out = loss_network.ExtraTerms(grid_weight=3.0).add_to(loss(y, content), None, content, y)
    assert out["grid"].item() == pytest.approx(3.0 * loss_network.grid_loss(y).item())
    assert out["total"].item() == pytest.approx(sum(out[k].item() for k in ("content", "style", "tv", "grid")))


def test_the_steadiness_term_passes_the_network_again_and_counts_in_the_total():
    style, content = torch.rand(1, 3, 8, 8) * 255, torch.rand(1, 3, 8, 8) * 255
    y = torch.rand(1, 3, 8, 8) * 255
    loss = PerceptualLoss(Identity(), style, "a", ("a",))
    flat = lambda x: torch.full_like(x, 100.0)  # noqa: E731 (a network whose answer never moves)
    out = loss_network.ExtraTerms(stability_weight=2.0).add_to(loss(y, content), flat, content, flat(content))
    assert "grid" not in out and out["stability"].item() == 0
    out = loss_network.ExtraTerms(grid_weight=1.0, stability_weight=2.0).add_to(loss(y, content), flat, content, y)
    assert out["stability"].item() > 0
    assert out["total"].item() == pytest.approx(sum(out[k].item() for k in ("content", "style", "tv", "grid", "stability")))


def test_style_loss_averages_over_the_batch():
    style = torch.rand(1, 3, 4, 4)
    loss = PerceptualLoss(Identity(), style, "a", ("a",), 1.0, 1.0, 0.0)
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    both = loss(torch.cat([a, b]), torch.cat([a, b]))["style"]
    assert both.item() == pytest.approx((loss(a, a)["style"] + loss(b, b)["style"]).item() / 2, rel=1e-5)


def reference_features(kernels, image, mean, std=(1, 1, 1), scale=1.0, upto="relu2_1"):
    """conv/relu/maxpool by hand, in float64, from [out, in, h, w] kernels."""
    x = (image.double() - torch.tensor(mean).double().view(1, 3, 1, 1)) / torch.tensor(std).double().view(1, 3, 1, 1)
    out = {}
    for name in loss_network.VGG19_LAYERS[: loss_network.VGG19_LAYERS.index(upto) + 1]:
        if name.startswith("conv"):
            k, b = kernels[name]
            x = F.conv2d(x, torch.from_numpy(k).double(), torch.from_numpy(b).double(), padding=1)
        elif name.startswith("relu"):
            x = x.clamp_min(0)
        else:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        out[name] = x * scale
    return out


def test_matconvnet_file_loads_with_its_layout_and_mean(tmp_path):
    kernels = make_vgg_mat(tmp_path / "vgg.mat", upto="conv2_1")
    vgg = loss_network.load_vgg(tmp_path / "vgg.mat", ["relu1_1", "relu2_1"])
    image = torch.rand(1, 3, 9, 7) * 255
    want = reference_features(kernels, image, (123.68, 116.779, 103.939))
    got = vgg(image)
    for layer in ("relu1_1", "relu2_1"):
        torch.testing.assert_close(got[layer].double(), want[layer], rtol=1e-4, atol=1e-3)
    assert len(vgg.body) == loss_network.VGG19_LAYERS.index("relu2_1") + 1  # stops at the deepest layer
    assert list(vgg(image, upto="relu1_1")) == ["relu1_1"]


def test_torchvision_state_dict_loads_with_its_normalisation(tmp_path):
    kernels = make_torchvision_vgg(tmp_path / "vgg19.pth", upto="conv2_1")
    vgg = loss_network.load_vgg(tmp_path / "vgg19.pth", ["relu2_1"])
    image = torch.rand(1, 3, 8, 8) * 255
    scale = 255 * np.mean(loss_network.TORCHVISION_STD)
    want = reference_features(kernels, image / 255, loss_network.TORCHVISION_MEAN, loss_network.TORCHVISION_STD, scale)
    torch.testing.assert_close(vgg(image)["relu2_1"].double(), want["relu2_1"], rtol=1e-4, atol=1e-3)


def test_missing_layer_is_named(tmp_path):
    make_vgg_mat(tmp_path / "vgg.mat", upto="conv2_2")
    with pytest.raises(UserError, match="the VGG weights have no layer conv3_1"):
        loss_network.load_vgg(tmp_path / "vgg.mat", ["relu1_1", "relu3_1"])


def test_real_partial_vgg19_loads():
    path = SHARED / "vgg19" / "imagenet-vgg19-conv1_1-conv3_4.mat"
    if not path.exists():
        pytest.skip(f"{path} is absent (the real VGG19 weights live in the shared folder)")
    vgg = loss_network.load_vgg(path, ["relu1_1", "relu2_1", "relu3_1"])
    assert vgg.mean.flatten().tolist() == pytest.approx([123.68, 116.779, 103.939], abs=1e-3)
    with pytest.raises(UserError, match="no layer conv4_1"):
        loss_network.load_vgg(path, loss_network.STYLE_LAYERS)


def test_pickle_as_vgg_weights_is_refused(tmp_path):
    import pickle
    (tmp_path / "vgg.pth").write_bytes(pickle.dumps(type("X", (), {"__reduce__": lambda self: (print, ("pwned",))})()))
    with pytest.raises(UserError, match="refused"):
        loss_network.load_vgg(tmp_path / "vgg.pth", ["relu1_1"])


@pytest.fixture
def vgg_host(tmp_path, monkeypatch):
    root = tmp_path / "host"
    root.mkdir()
    make_torchvision_vgg(root / "tmp.pth", upto="conv1_2")
    digest = hashlib.sha256((root / "tmp.pth").read_bytes()).hexdigest()
    (root / "tmp.pth").rename(root / f"vgg19-{digest[:8]}.pth")
    srv = server.serve({"/models": root})
    base = f"http://127.0.0.1:{srv.server_address[1]}/models"
    yield base, digest[:8], root
    srv.shutdown()


def test_default_weights_download_once_with_checksum(vgg_host, monkeypatch):
    base, prefix, root = vgg_host
    monkeypatch.setenv("STYLEMIRROR_VGG_URL", f"{base}/vgg19-{prefix}.pth")
    path = loss_network.default_vgg_path()
    assert path.read_bytes() == (root / f"vgg19-{prefix}.pth").read_bytes()
    (root / f"vgg19-{prefix}.pth").unlink()  # the second call must not download again
    assert loss_network.default_vgg_path() == path
    loss_network.load_vgg(path, ["relu1_2"])


def test_download_with_wrong_checksum_is_refused_and_not_kept(vgg_host, monkeypatch):
    base, prefix, root = vgg_host
    (root / f"vgg19-{prefix}.pth").rename(root / "vgg19-00000000.pth")
    monkeypatch.setenv("STYLEMIRROR_VGG_URL", f"{base}/vgg19-00000000.pth")
    with pytest.raises(UserError, match="checksum mismatch"):
        loss_network.default_vgg_path()
    assert not list((loss_network.cache_dir() / "vgg").iterdir())
