"""`stylemirror models pull` against a local HTTP server: never the network."""

import pytest
import torch

from helpers import random_net, stylemirror
from stylemirror import formats, registry, server
from stylemirror.errors import UserError


@pytest.fixture
def model_host(tmp_path, monkeypatch):
    """A local stand-in for the published models' host, serving a generated 'wave'."""
    root = tmp_path / "host"
    formats.write_ml5(random_net(seed=11), root / "wave")
    srv = server.serve({"/styles": root})
    monkeypatch.setenv("STYLEMIRROR_MODELS_URL", f"http://127.0.0.1:{srv.server_address[1]}/styles")
    yield root
    srv.shutdown()


def test_pull_then_load_by_name(model_host):
    with pytest.raises(UserError, match="not downloaded yet: run `stylemirror models pull wave`"):
        registry.open_model("wave")
    dest = registry.pull("wave")
    assert dest == registry.cache_dir() / "models" / "wave"
    loaded = registry.open_model("wave")
    assert torch.equal(loaded.conv4.conv.weight, random_net(seed=11).conv4.conv.weight)
    assert registry.pulled() == ["wave"]


def test_cli_pull_and_list(model_host):
    result = stylemirror("models", "pull", "wave")
    assert result.returncode == 0, result.stderr
    assert "wave             pulled" in stylemirror("models", "list").stdout


def test_damaged_download_leaves_nothing(model_host):
    (model_host / "wave" / "Variable_20").write_bytes(b"\0" * 8)
    with pytest.raises(UserError, match="Variable_20: 8 bytes"):
        registry.pull("wave")
    assert not registry.model_dir("wave").exists()
    assert not list((registry.cache_dir() / "models").iterdir())


def test_unreachable_host_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("STYLEMIRROR_MODELS_URL", "http://127.0.0.1:9/nothing-here")
    with pytest.raises(UserError, match=r"cannot download http://127.0.0.1:9/nothing-here/wave/manifest.json"):
        registry.pull("wave")


def test_unknown_style_name():
    with pytest.raises(UserError, match="unknown style 'mona_lisa'"):
        registry.pull("mona_lisa")
