"""The U-Net denoiser: shapes, registry, and inpainting that holds the known voxels."""

import math

import pytest
import torch

from bindiff.core import DENOISERS, BernoulliProcess, BinomialDiffusion, build_denoiser
from bindiff.core.unet import UNetDenoiser, bfloat16_autocast


@pytest.mark.parametrize("grid, patch", [([6, 7, 5], 1), ([6, 7, 5], 2), ([9, 10], 1), ([9, 10], 2)])
def test_output_shape_for_2d_and_3d_grids(grid, patch):
    torch.manual_seed(0)
    dim = math.prod(grid)
    net = UNetDenoiser(dim, grid, channels=[4, 8], time_dim=8, patch=patch)
    x = (torch.rand(3, dim) < 0.4).float()
    out = net(x, torch.tensor([1, 2, 3]))
    assert out.shape == (3, dim) and out.dtype == torch.float32
    assert not torch.equal(out[0], net(x, torch.tensor([5, 2, 3]))[0])  # the time step matters


def test_registered_and_refuses_a_wrong_grid():
    import bindiff.core.unet  # noqa: F401

    assert DENOISERS["unet"] is UNetDenoiser
    net = build_denoiser("unet", 60, grid=[3, 4, 5], channels=[4])
    assert net.dim == 60
    with pytest.raises(ValueError, match="holds 60 voxels but the vectors have length 61"):
        build_denoiser("unet", 61, grid=[3, 4, 5])
    with pytest.raises(ValueError, match="2 or 3 positive sides"):
        build_denoiser("unet", 5, grid=[5])


def test_inpainting_holds_the_known_voxels():
    torch.manual_seed(0)
    grid = [6, 6, 4]
    dim = math.prod(grid)
    model = BinomialDiffusion(UNetDenoiser(dim, grid, channels=[4, 8], time_dim=8, patch=2),
                              BernoulliProcess.from_schedule("jsd", 6)).eval()
    g = torch.Generator().manual_seed(1)
    known = (torch.rand(2, dim, generator=g) < 0.3).float()
    mask = torch.rand(2, dim, generator=g) < 0.5
    for mode in ("sample", "mean"):
        out = model.inpaint(known, mask, steps=3, generator=torch.Generator().manual_seed(2), mode=mode)
        assert torch.equal(out[mask], known[mask])
        assert ((out >= 0) & (out <= 1)).all()
    samples = model.sample(2, steps=3, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (2, dim) and set(samples.unique().tolist()) <= {0.0, 1.0}


def _twins(grid):
    """Two U-Nets with the same weights, one asking for bfloat16, one not."""
    dim = math.prod(grid)
    torch.manual_seed(0)
    plain = UNetDenoiser(dim, grid, channels=[4, 8], time_dim=8, patch=2, bf16=False)
    asking = UNetDenoiser(dim, grid, channels=[4, 8], time_dim=8, patch=2, bf16=True)
    asking.load_state_dict(plain.state_dict())
    return plain, asking, (torch.rand(2, dim, generator=torch.Generator().manual_seed(1)) < 0.4).float()


@pytest.mark.parametrize("avx512_bf16, amx", [(False, False), (True, False), (False, True)])
def test_bf16_computes_in_float32_on_every_cpu(monkeypatch, avx512_bf16, amx):
    # AVX2 emulates bfloat16 (40x slower); AVX-512 BF16's 3-D convolution gradients were wrong
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    plain, asking, x = _twins([6, 8, 4])
    t = torch.tensor([1, 3])
    assert torch.equal(asking(x, t), plain(x, t))


def test_bf16_autocast_is_asked_for_on_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert bfloat16_autocast("cuda") and not bfloat16_autocast("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert not bfloat16_autocast("cuda")


def test_channels_last_weights_round_trip_through_a_state_dict():
    plain, _, x = _twins([6, 8, 4])
    other = UNetDenoiser(plain.dim, plain.grid, channels=[4, 8], time_dim=8, patch=2)
    other.load_state_dict(plain.state_dict())
    assert other.stem.weight.is_contiguous(memory_format=torch.channels_last_3d)
    t = torch.tensor([2, 2])
    assert torch.equal(other(x, t), plain(x, t))
