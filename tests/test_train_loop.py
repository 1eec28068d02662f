"""The training loop never waits on the device for a step: a non-finite step is skipped on the
device (weights and Adam's state untouched) and the losses are read once a log row."""

import math
import signal

import pytest
import torch

from helpers import rows, stylemirror, train_args
from stylemirror import cli, train


def tiny_step(net, optimizer, tally, scale):
    out = net(torch.ones(2, 4)).sum()
    losses = {"content": out * 0 + 1, "style": out * 0 + 2, "tv": out * 0 + 3, "total": out * scale}
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    non_finite = ~torch.isfinite(losses["total"].detach())
    train.step_unless(optimizer, non_finite)
    tally.add(losses, non_finite)


def snapshot(net, optimizer):
    return ([p.detach().clone() for p in net.parameters()],
            [{k: v.clone() for k, v in s.items()} for s in optimizer.state.values()])


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a[0], b[0])) and all(
        s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s) for s, t in zip(a[1], b[1]))


def test_a_non_finite_step_changes_no_weight_nor_adams_state_and_is_counted():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    optimizer = train.adam(net, 1e-2)
    tally = train.Tally(torch.device("cpu"))
    tiny_step(net, optimizer, tally, 1.0)
    before = snapshot(net, optimizer)
    for scale in (math.nan, math.inf, math.nan):
        tiny_step(net, optimizer, tally, scale)
        assert same(before, snapshot(net, optimizer))
    tiny_step(net, optimizer, tally, 2.0)
    assert not same(before, snapshot(net, optimizer))
    assert [s["step"].item() for s in optimizer.state.values()] == [2.0, 2.0]
    seen = tally.read()
    assert seen["non_finite"] == 3 and seen["longest_bad_run"] == 3
    assert seen["losses"]["content"] == 1 and seen["losses"]["tv"] == 3  # averaged over the 2 finite steps
    # A run of non-finite steps goes on across reads; a finite step ends it.
    for _ in range(2):
        tiny_step(net, optimizer, tally, math.nan)
    assert tally.read() == {"losses": None, "non_finite": 2, "longest_bad_run": 2}
    for _ in range(3):
        tiny_step(net, optimizer, tally, math.nan)
    assert tally.read()["longest_bad_run"] == 5
    tiny_step(net, optimizer, tally, 1.0)  # each read reports the longest run that reached into its window
    assert tally.read()["longest_bad_run"] == 5
    tiny_step(net, optimizer, tally, 1.0)
    assert tally.read()["longest_bad_run"] == 0


def test_a_checkpoint_of_plain_adam_resumes_into_the_fused_one():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    plain = torch.optim.Adam(net.parameters(), 1e-2)
    net(torch.ones(1, 4)).sum().backward()
    plain.step()
    fused = train.adam(net, 1e-2)
    fused.load_state_dict(train.as_fused_adam(plain.state_dict()))
    before = snapshot(net, fused)
    tally = train.Tally(torch.device("cpu"))
    tiny_step(net, fused, tally, math.nan)
    assert same(before, snapshot(net, fused))
    tiny_step(net, fused, tally, 1.0)
    assert [s["step"].item() for s in fused.state.values()] == [2.0, 2.0]


@pytest.mark.slow
def test_non_finite_steps_are_caught_at_the_next_read_with_the_last_good_checkpoint(workdir, tmp_path):
    """Losses are read only at log rows and checkpoints (here every 3 steps): the run stops at the
    first read after five non-finite steps in a row, every checkpoint's weights finite. Without
    the grid term: with it, the first step overflows the weights before any loss turns
    non-finite (test_train.py's test_non_finite_loss_stops_with_last_good_checkpoint)."""
    ckpt = tmp_path / "ckpt"
    result = stylemirror(*train_args(workdir, ckpt, "--epochs", "20", "--checkpoint-iterations", "3",
                                     "--log-interval", "50", "--learning-rate", "1e30", "--grid-weight", "0"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "non-finite 5 steps in a row" in result.stderr and "Traceback" not in result.stderr
    saved = sorted(ckpt.glob("ckpt_*.pt"))
    assert saved and f"Last good checkpoint: {saved[-1]}" in result.stderr
    assert "steps 1-3: 2 non-finite loss(es), those steps skipped" in result.stdout
    for path in saved:
        state = torch.load(path, weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [r["step"] for r in rows(ckpt)] == [3]


@pytest.mark.parametrize("extra", [(), ("--epochs", "20", "--learning-rate", "1e30", "--grid-weight", "0")],
                         ids=["finished", "failed"])
def test_train_gives_back_the_signal_handlers_it_took(workdir, tmp_path, extra):
    """Ctrl-C works again for whoever called train() (a notebook, a script), however it ended."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    code = 0
    try:
        cli.main([str(a) for a in train_args(workdir, tmp_path / "ckpt", "--max-steps", "6", *extra)])
    except SystemExit as e:
        code = e.code
    assert code == (2 if extra else 0)  # the failed run: non-finite five steps in a row
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
