"""The reverse loop, the optimiser's schedule, training steps and checkpoints against hand
computations: each test kills mutants of the code that the rest of the suite let survive
(an eleventh audit pass, by mutation)."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser, ReverseScheduler
from bindiff.core.losses import diffusion_loss, vb_terms
from bindiff.files import CheckpointError
from bindiff.training.checkpoint import (RESUME_KEYS, check_resumable, load_checkpoint, remove_stale_temporaries,
                                         saved_device_types)
from bindiff.training.optim import WarmupClip, build_optimizer
from bindiff.training.steps import single_step
from test_start_logits import _model


class Oracle(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.dim = logits.shape[-1]
        self.register_buffer("logits", logits)

    def forward(self, x_t, t):
        return self.logits.expand(x_t.shape[0], -1)


def g(seed):
    return torch.Generator().manual_seed(seed)


def test_the_last_step_decodes_as_asked():
    logits = torch.tensor([[-2.0, 0.0, 0.5, 3.0]])
    model = BinomialDiffusion(Oracle(logits), BernoulliProcess.from_schedule("jsd", 4))
    p = torch.sigmoid(logits).expand(5, -1)
    # decode="mean": the last call's p̂ itself; "threshold": p̂ >= ½ (a logit of exactly 0 is a 1)
    assert torch.equal(model.sample(5, generator=g(0), decode="mean"), p)
    thresholded = torch.tensor([[0.0, 1, 1, 1]]).expand(5, -1)
    assert torch.equal(model.sample(5, generator=g(0), decode="threshold"), thresholded)
    nothing = torch.zeros(5, 4)
    # decode follows mode by default
    assert torch.equal(model.inpaint(nothing, nothing.bool(), generator=g(0), mode="mean"), p)
    assert set(model.inpaint(nothing, nothing.bool(), generator=g(0), mode="mean", decode="sample")
               .unique().tolist()) <= {0.0, 1.0}


def test_on_step_hears_the_time_of_each_call():
    model = BinomialDiffusion(Oracle(torch.zeros(1, 3)), BernoulliProcess.from_schedule("jsd", 10))
    heard = []
    model.sample(2, steps=3, generator=g(0), on_step=lambda t, p: heard.append(t))
    assert heard == [10, 6, 1]  # torch.linspace(10, 1, 3).round(): 10, 5.5 -> 6 (half to even), 1
    heard.clear()
    model.sample(2, steps=3, generator=g(0), resample=2, on_step=lambda t, p: heard.append(t))
    assert heard == [10, 10, 6, 6, 1]


class Recorder(nn.Module):
    """Logits 0; records the mean over rows of bit 0 of each x_t it is shown."""

    def __init__(self):
        super().__init__()
        self.dim = 2
        self.seen = []

    def forward(self, x_t, t):
        self.seen.append((int(t[0]), float(x_t[:, 0].double().mean())))
        return torch.zeros_like(x_t)


def test_inpainting_shows_the_denoiser_known_bits_noised_to_its_time():
    T, n = 10, 40_000
    process = BernoulliProcess.from_schedule("jsd", T)
    betas = process.betas.tolist()
    model = BinomialDiffusion(Recorder(), process)
    known = torch.ones(n, 2)
    mask = torch.tensor([[True, False]]).expand(n, 2)
    model.inpaint(known, mask, steps=4, generator=g(3))
    assert [t for t, _ in model.denoiser.seen] == [10, 7, 4, 1]
    for t, mean in model.denoiser.seen:
        abar = math.prod(1 - b for b in betas[:t])  # by hand from the betas
        expected = abar + (1 - abar) / 2  # q(x_t = 1 | x_0 = 1)
        se = math.sqrt(expected * (1 - expected) / n) + 1e-12
        assert abs(mean - expected) < 5 * se + 1e-9, (t, mean, expected)


def test_prior_from_data_is_the_marginal_at_T():
    process = BernoulliProcess.from_schedule("linear", 5, beta_start=0.01, beta_end=0.05)
    betas = process.betas.tolist()
    model = BinomialDiffusion(Oracle(torch.zeros(1, 2)), process)
    x0 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    abar = math.prod(1 - b for b in betas)
    expected = torch.tensor([abar * 1.0 + (1 - abar) / 2, abar * 0.5 + (1 - abar) / 2], dtype=torch.float64)
    torch.testing.assert_close(model.prior_from_data(x0).double(), expected, rtol=0, atol=1e-6)


class CondRecorder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.conds = []
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, cond):
        self.conds.append(cond.clone())
        return torch.zeros_like(x_t) + self.w + 0.3


def test_self_conditioned_training_hands_the_condition_to_both_calls():
    model = BinomialDiffusion(CondRecorder(3), BernoulliProcess.from_schedule("jsd", 3), self_condition=True)
    x0 = torch.tensor([[1.0, 0.0, 1.0]]).repeat(8, 1)
    image = torch.arange(24.0).reshape(8, 3)
    model(x0, generator=g(5), cond=image)
    first, second = model.denoiser.conds
    assert torch.equal(first, torch.cat([image, torch.zeros(8, 3)], 1))
    assert torch.equal(second[:, :3], image)


def test_resampled_runs_with_start_logits_self_conditioned_keep_every_step():
    model = _model(self_condition=True)
    cond = torch.randn(3, 64, generator=g(1))
    first = model.start_logits(cond)
    a, b = [], []
    model.sample(3, steps=2, generator=g(5), cond=cond, resample=3, decode="mean", on_step=lambda t, p: a.append(p))
    model.sample(3, steps=2, generator=g(5), cond=cond, resample=3, decode="mean", on_step=lambda t, p: b.append(p),
                 start_logits=first)
    assert len(a) == len(b) == 4 and all(map(torch.equal, a, b))


class Timed(Oracle):
    """An oracle that records the time of each call."""

    def __init__(self, logits):
        super().__init__(logits)
        self.calls = []

    def forward(self, x_t, t):
        self.calls.append(int(t[0]))
        return super().forward(x_t, t)


def test_a_warm_start_clips_steps_beyond_its_start():
    model = BinomialDiffusion(Timed(torch.zeros(1, 3)), BernoulliProcess.from_schedule("jsd", 10))
    calls = model.denoiser.calls
    init = torch.ones(2, 3)
    model.inpaint(init, torch.zeros(2, 3, dtype=torch.bool), init=init, start=3, steps=8, generator=g(0))
    assert calls == [3, 2, 1]


def test_warmup_and_cosine_decay_by_hand():
    p = nn.Parameter(torch.zeros(1))
    opt = WarmupClip(torch.optim.SGD([p], lr=1.0), warmup_steps=2, total_steps=4)
    lrs = []
    for _ in range(4):
        p.grad = torch.ones(1)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    warm = [min(1, k / 2) for k in (1, 2, 3, 4)]
    cos = [0.5 * (1 + math.cos(math.pi * (k - 1) / 4)) for k in (1, 2, 3, 4)]
    expected = [w * c for w, c in zip(warm, cos)]  # 0.5, 0.854, 0.5, 0.146
    assert lrs == [pytest.approx(e, abs=1e-12) for e in expected]
    assert float(p.detach()) == pytest.approx(-sum(expected), abs=1e-12)


def test_gradients_are_clipped_to_their_global_norm():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    opt = WarmupClip(torch.optim.SGD([a, b], lr=1.0), clip_norm=1.0)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])  # global norm 5
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([-0.6, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(b.detach(), torch.tensor([-0.8]), atol=1e-5, rtol=0)


def test_build_optimizer_reads_the_recipe():
    model = nn.Linear(2, 1)
    cfg = {"train": {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1, "lr_decay": "cosine", "epochs": 3,
                     "warmup_steps": 0, "clip_grad_norm": None, "ema": 0.0}}
    opt = build_optimizer(cfg, model, steps_per_epoch=5)
    assert isinstance(opt.optimizer, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.total_steps == 15


def test_the_top_time_is_the_last_trained_time():
    model = BinomialDiffusion(Oracle(torch.zeros(1, 2)), BernoulliProcess.from_schedule("jsd", 10), train_t_max=4)
    model.set_time_mixture(0.0, 1, top_share=1.0)
    assert model.sample_timesteps(50, g(0)).tolist() == [4] * 50


def test_explicit_timesteps_must_be_distinct_times_in_1_to_T():
    sched = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 5))
    for bad in ([5, 5, 3], [3, 1, 0]):
        with pytest.raises(ValueError):
            sched.set_timesteps(timesteps=bad)
    sched.set_timesteps(timesteps=[5, 3, 1])
    with pytest.raises(ValueError):
        sched.previous(3.5)


def test_without_steps_every_time_is_visited():
    model = BinomialDiffusion(Timed(torch.zeros(1, 2)), BernoulliProcess.from_schedule("jsd", 100))
    calls = model.denoiser.calls
    model.sample(2, generator=g(0))
    assert calls == list(range(100, 0, -1))


def test_the_loss_of_half_precision_logits_is_summed_in_float32():
    process = BernoulliProcess.from_schedule("jsd", 4)
    D = 4096
    x0 = torch.ones(2, D)
    logits = torch.zeros(2, D, dtype=torch.bfloat16)
    terms = diffusion_loss("bce", process, x0, x0, torch.tensor([1, 2]), logits)
    assert terms["loss"].dtype == torch.float32
    torch.testing.assert_close(terms["loss"], torch.full((2,), D * math.log(2)), rtol=1e-6, atol=0)


def test_one_time_for_the_batch_is_that_time_on_every_row():
    process = BernoulliProcess.from_schedule("jsd", 4)
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    x_t = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    logits = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.5, -0.5]])
    for t in (1, 3, 4):
        per_row = vb_terms(process, x0, x_t, torch.tensor([t, t]), logits)
        assert torch.equal(vb_terms(process, x0, x_t, t, logits), per_row)


def test_a_single_process_step_reports_the_loss_summed_over_its_rows():
    torch.manual_seed(0)
    model = BinomialDiffusion(MLPDenoiser(5, [8], time_dim=4), BernoulliProcess.from_schedule("jsd", 4))
    dense = (np.random.default_rng(0).random((6, 5)) < 0.4).astype(np.float32)
    rows = np.array([4, 1, 2])
    _, summed = single_step(model, sp.csr_matrix(dense), torch.device("cpu"), g(3))(rows)
    out = model(torch.from_numpy(dense[rows]), generator=g(3))
    assert summed == pytest.approx(float(out.terms["loss"].detach().double().sum()), rel=1e-6)


def test_an_old_checkpoints_generators_are_told_apart_by_their_state_size():
    cpu = torch.Generator().manual_seed(0).get_state()
    cuda_like = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state: seed and offset
    old = {"order": cpu, "noise": cuda_like, "torch": torch.get_rng_state(), "cuda": [], "numpy": {}, "python": []}
    assert saved_device_types(old) == {"order": "cpu", "noise": "cuda"}
    assert saved_device_types({**old, "devices": {"order": "cpu", "noise": "cpu"}}) == {"order": "cpu", "noise": "cpu"}


def test_only_bindiffs_own_temporaries_are_removed(tmp_path):
    (tmp_path / ".last.pt.x1y2.tmp").write_bytes(b"")
    (tmp_path / "notes.tmp").write_bytes(b"mine")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".last.pt.x1y2.tmp"]
    assert (tmp_path / "notes.tmp").exists()


def test_run_reverse_returns_the_last_p_hat_beside_the_state():
    logits = torch.tensor([[-2.0, 0.0, 0.5, 3.0]])
    model = BinomialDiffusion(Oracle(logits), BernoulliProcess.from_schedule("jsd", 4))
    state, p_hat = model.run_reverse(torch.full((3, 4), 0.5).bernoulli(generator=g(1)), model.scheduler(),
                                     decode="sample", generator=g(0))
    assert torch.equal(p_hat, torch.sigmoid(logits).expand(3, -1))
    assert set(state.unique().tolist()) <= {0.0, 1.0}


def test_checkpoints_of_another_format_and_resume_points_missing_a_key_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format_version": 2, "config_yaml": "", "dim": 3, "model": {}}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)
    torch.save({"format_version": 1, "config_yaml": "", "dim": "3", "model": {}}, path)
    with pytest.raises(CheckpointError, match="dim"):
        load_checkpoint(path)
    full = {key: 0 for key in RESUME_KEYS} | {"rng": {"order": 0, "noise": 0, "torch": 0}}
    check_resumable(full, path)
    for key in ("seconds", "rng"):
        with pytest.raises(CheckpointError):
            check_resumable({k: v for k, v in full.items() if k != key}, path)
    with pytest.raises(CheckpointError, match="random-number"):
        check_resumable(full | {"rng": {"order": 0, "noise": 0}}, path)
