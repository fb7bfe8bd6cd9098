"""An update whose gradient is not finite is skipped, counted and reported, never applied.

Truths: the weights before the step (a skipped update leaves them bit for bit), the bare
optimiser's step on the same finite gradient (the next update is that one: a skip leaves no
trace in Adam's state), and the counts the test itself made.
"""

import math

import torch

from bindiff.training.optim import WarmupClip


def _weights():
    return torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))


def _set_grad(param, values):
    param.grad = torch.tensor(values)


def test_a_non_finite_gradient_is_skipped_and_the_next_update_is_the_bare_optimisers():
    wrapped, bare = _weights(), _weights()
    optimizer = WarmupClip(torch.optim.Adam([wrapped], lr=0.1))
    reference = torch.optim.Adam([bare], lr=0.1)
    before = wrapped.detach().clone()
    for bad in ([math.inf, 0.0, 0.0], [0.0, math.nan, 1.0]):
        _set_grad(wrapped, bad)
        optimizer.step()
        assert torch.equal(wrapped.detach(), before)
        assert wrapped.grad is None  # dropped: it must not leak into the next step
    _set_grad(wrapped, [0.3, -0.2, 1.0])
    _set_grad(bare, [0.3, -0.2, 1.0])
    optimizer.step()
    reference.step()
    assert torch.equal(wrapped.detach(), bare.detach())
    assert (optimizer.skipped, optimizer.steps_done) == (2, 1)


def test_skipped_updates_are_reported_in_one_line_and_only_when_there_are_any():
    param = _weights()
    optimizer = WarmupClip(torch.optim.Adam([param], lr=0.1))
    _set_grad(param, [1.0, 1.0, 1.0])
    optimizer.step()
    assert optimizer.skipped_warning("model") is None
    for _ in range(3):
        _set_grad(param, [math.inf, 1.0, 1.0])
        optimizer.step()
    warning = optimizer.skipped_warning("unet baseline")
    assert warning == ("the unet baseline skipped 3 of 4 updates for a non-finite gradient "
                       "(metrics.json: training.skipped_steps)")


def test_the_skip_count_survives_a_checkpoint():
    param = _weights()
    optimizer = WarmupClip(torch.optim.Adam([param], lr=0.1))
    _set_grad(param, [math.nan, 1.0, 1.0])
    optimizer.step()
    _set_grad(param, [1.0, 1.0, 1.0])
    optimizer.step()
    restored = WarmupClip(torch.optim.Adam([_weights()], lr=0.1))
    restored.load_state_dict(optimizer.state_dict())
    assert (restored.skipped, restored.steps_done) == (1, 1)
