"""The modules' layers: formats (the file formats) is below registry (the published models'
cache, which reads what it downloads with formats), never the other way at import time."""

import subprocess
import sys


def test_formats_does_not_import_registry():
    code = "import sys, stylemirror.formats; print('stylemirror.registry' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_load_model_still_takes_a_published_name(tmp_path, monkeypatch):
    import pytest

    from stylemirror import formats
    from stylemirror.errors import UserError
    monkeypatch.setenv("STYLEMIRROR_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="not downloaded yet: run `stylemirror models pull wave`"):
        formats.load_model("wave")
    with pytest.raises(UserError, match="not a published style"):
        formats.load_model("no-such-style")
