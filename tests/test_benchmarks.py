"""benchmarks/train_epoch.py: its phases measure what they say, and the script runs end to end."""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "train_epoch.py"
TINY = ["recipes/ml1m.yaml", "data.dataset=synthetic:tiny", "split.n_valid_users=50", "split.n_test_users=50",
        "denoiser.params.hidden=[16]", "train.threads=1"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_epoch_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_partial_epoch_is_extrapolated_from_the_batches_timed(bench, monkeypatch):
    monkeypatch.chdir(ROOT)
    full_size = bench.matmul_flops_per_s  # a 2048² matmul is seconds of a busy core: time a small one
    monkeypatch.setattr(bench, "matmul_flops_per_s", lambda device, dtype=None: full_size(device, dtype, n=256))
    args = bench.parse_args([*TINY, "--max-batches", "1"])
    config, split, device, data = bench.prepare(args)
    assert data["interactions"] == 8_000 and data["train_users"] == 300
    train = bench.measure_train(args, config, split, device, bench.PhaseMemory())
    # 300 training users in batches of 200: one of two batches timed, 200 users
    assert (train["batches_timed"], train["batches_per_epoch"], train["users_timed"]) == (1, 2, 200)
    assert train["epoch_extrapolated"] is True
    # epoch = time × 300 / 200 users; the two figures are rounded to 0.01 s and 0.001 s
    assert abs(train["epoch_seconds"] - train["seconds_timed"] * 300 / 200) < 0.006
    full = bench.measure_train(bench.parse_args(TINY), config, split, device, bench.PhaseMemory())
    assert (full["batches_timed"], full["users_timed"], full["epoch_extrapolated"]) == (2, 300, False)


def test_ease_is_skipped_with_its_estimate_when_over_the_limit(bench, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = bench.parse_args([*TINY, "--ease-limit-gb", "0.001"])
    config, split, device, _ = bench.prepare(args)
    result = bench.measure_ease(args, config, split, device, bench.PhaseMemory())
    estimate_mb = 36 * split.n_items**2 / 2**20  # four float64 n² matrices and a float32 one: 3.1 MB for 299 items
    assert result == {"skipped": f"EASE needs about {estimate_mb / 1024:.1f} GiB (36 bytes × {split.n_items:,}² "
                                 "item pairs), over --ease-limit-gb 0.001 GiB", "estimate_mb": round(estimate_mb)}


def test_the_script_prints_its_figures_and_the_command(tmp_path):
    argv = [*TINY, "--phases", "eval"]
    data_dir = tmp_path / "data dir"  # generated data read nothing from it; its name needs quoting
    env = {**os.environ, "BINDIFF_DATA_DIR": str(data_dir)}
    finished = subprocess.run([sys.executable, "benchmarks/train_epoch.py", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=env)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.strip().splitlines()
    assert lines[-1] == (f"command: BINDIFF_DATA_DIR={shlex.quote(str(data_dir))} "
                         + shlex.join(["python", "benchmarks/train_epoch.py", *argv]))
    results = json.loads(lines[-2])
    assert results["eval"]["eval_users"] == 50 and results["eval"]["top_k"] == 100
    assert results["eval"]["threads"] == 1
    assert lines[0].startswith("data   synthetic:tiny: 400 users × ")
    assert lines[1].startswith("eval   top-100 of 50 users in ")


def _variant(variant: str, *extra: str, root: Path, here=None) -> dict:
    """The script's results for ``variant``: run as a script, or, given ``here`` (pytest's monkeypatch
    and capsys), its main() in this process, which spares a process start (torch, dynamo, matplotlib)."""
    data_dir = root / "data dir"  # generated data read nothing from it; its name needs quoting
    argv = [variant, *TINY[1:], "train.epochs=2", "train.patience=2", "--recipe", TINY[0], "--seeds", "3",
            "--root", str(root), *extra]
    if here is None:
        finished = subprocess.run([sys.executable, "benchmarks/ml1m_variants.py", *argv], cwd=ROOT,
                                  capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "BINDIFF_DATA_DIR": str(data_dir)})
        assert finished.returncode == 0, finished.stderr
        stdout = finished.stdout
    else:
        import bindiff.core.denoisers as denoisers

        monkeypatch, capsys = here
        monkeypatch.chdir(ROOT)
        monkeypatch.setenv("BINDIFF_DATA_DIR", str(data_dir))
        monkeypatch.setattr(sys, "argv", ["benchmarks/ml1m_variants.py", *argv])
        monkeypatch.setattr(denoisers, "DENOISERS", dict(denoisers.DENOISERS))  # the variant registers its own
        capsys.readouterr()
        _variants_module().main()
        stdout = capsys.readouterr().out
    lines = stdout.strip().splitlines()
    # the printed command runs the same measurement again: the data folder, the runs' folder, every setting
    words = shlex.split(lines[-1].removeprefix("command: "))
    assert words[:3] == [f"BINDIFF_DATA_DIR={data_dir}", "python", "benchmarks/ml1m_variants.py"]
    assert words[3:7] == [variant, *TINY[1:4]] and words[words.index("--root") + 1] == str(root)
    return json.loads(lines[-2])


def test_the_script_trains_the_recipe_and_each_model_variant_and_the_variants_change_the_model(tmp_path, monkeypatch,
                                                                                               capsys):
    """End to end for the variants that replace the denoiser (the loss variants: the next test). The
    recipe as a script (its own process, as the docstring's command runs it), the variants in this one."""
    recipe = _variant("recipe", root=tmp_path)
    ease = _variant("ease_term", "--lam", "50", root=tmp_path, here=(monkeypatch, capsys))
    assert ease["valid_ndcg@100"] != recipe["valid_ndcg@100"]
    linear = _variant("linear_term", "--weight", "1", root=tmp_path, here=(monkeypatch, capsys))
    assert linear["valid_ndcg@100"] != recipe["valid_ndcg@100"]
    assert set(linear["valid"]) == set(linear["test"]) and "ndcg@100" in linear["test"]


def test_the_loss_variants_are_the_recipes_loss_at_their_neutral_weight_and_differ_otherwise(monkeypatch):
    """The emphasis at weight 1 and the multinomial term at weight 0 are the recipe's loss, bit for bit,
    on a batch where the input dropout removes some positives and keeps others."""
    import torch

    import bindiff.core.denoisers as denoisers
    import bindiff.core.diffusion as diffusion
    from bindiff.config import load_recipe
    from bindiff.core import BernoulliProcess, BinomialDiffusion

    variants = _variants_module()
    plain_loss, plain_forward = diffusion.diffusion_loss, denoisers.MLPDenoiser.forward
    recipe = load_recipe(ROOT / "recipes" / "ml1m.yaml")
    process = BernoulliProcess.from_schedule(recipe["diffusion"]["schedule"], recipe["diffusion"]["steps"],
                                             **recipe["diffusion"]["schedule_params"])
    torch.manual_seed(0)
    net = denoisers.MLPDenoiser(40, hidden=[16], input_dropout=0.5, input_norm="l2", time_dim=4)
    x0 = (torch.rand(6, 40, generator=torch.Generator().manual_seed(1)) < 0.3).float()

    def per_row_loss(patch=None, *args):
        # each patch replaces module attributes: start from the plain ones (monkeypatch restores them)
        monkeypatch.setattr(diffusion, "diffusion_loss", plain_loss)
        monkeypatch.setattr(denoisers.MLPDenoiser, "forward", plain_forward)
        if patch is not None:
            patch(*args)
        model = BinomialDiffusion(net, process, loss=recipe["diffusion"]["loss"]).train()
        with torch.random.fork_rng():  # the same dropout mask for every variant
            torch.manual_seed(2)
            return model(x0, generator=torch.Generator().manual_seed(3)).terms["loss"]

    recipe_loss = per_row_loss()
    assert torch.equal(per_row_loss(variants.patch_emphasis, 1.0), recipe_loss)
    assert torch.equal(per_row_loss(variants.patch_multinomial, 0.0), recipe_loss)
    assert not torch.allclose(per_row_loss(variants.patch_emphasis, 4.0), recipe_loss)
    assert not torch.allclose(per_row_loss(variants.patch_multinomial, 2.0), recipe_loss)


def test_the_unet_step_benchmark_prints_each_precision_and_the_command():
    small = ["recipes/hippocampus_segmentation.yaml", "grid.shape=[8,8,8]", "denoiser.params.channels=[4]",
             "denoiser.params.patch=1", "train.batch_size=2"]
    finished = subprocess.run([sys.executable, "benchmarks/unet_step.py", *small, "--bf16", "off", "forced",
                               "--steps", "1", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert any("bf16 off" in line and "s per step" in line for line in lines)
    assert any("bf16 forced" in line and "s per step" in line for line in lines)
    # the printed command runs the same measurement again: every setting, overrides quoted for a shell
    assert lines[-1] == ("command: python benchmarks/unet_step.py recipes/hippocampus_segmentation.yaml "
                         "'grid.shape=[8,8,8]' 'denoiser.params.channels=[4]' denoiser.params.patch=1 "
                         "train.batch_size=2 --bf16 off forced --steps 1 --threads 1")
    assert shlex.split(lines[-1].removeprefix("command: python "))[1:] == small + [
        "--bf16", "off", "forced", "--steps", "1", "--threads", "1"]


@pytest.mark.parametrize("script", ["compare_metrics", "inference_ablation", "generation_panel"])
def test_a_benchmark_asked_for_help_prints_its_usage_and_exits_0(script):
    finished = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--help", "a", "b"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.startswith(
        (ROOT / "benchmarks" / f"{script}.py").read_text().split('"""')[1].split("\n")[0])


def _variants_module():
    spec = importlib.util.spec_from_file_location("ml1m_variants_benchmark", ROOT / "benchmarks" / "ml1m_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_learned_linear_term_adds_x_w_without_its_diagonal_to_the_mlp():
    import torch

    from bindiff.core.denoisers import MLPDenoiser

    variants = _variants_module()
    torch.manual_seed(0)
    params = dict(hidden=[8], input_dropout=0.5, input_norm="l2", time_dim=4)
    plain = MLPDenoiser(6, **params)
    linear = variants.LinearTermDenoiser(6, **params)
    linear.load_state_dict({**plain.state_dict(), "linear_weight": torch.zeros(6, 6),
                            "off_diagonal": linear.off_diagonal})
    x = torch.tensor([[1.0, 0, 1, 0, 0, 1], [0, 1, 0, 0, 1, 0]])
    t = torch.tensor([1, 2])
    plain.eval(), linear.eval()
    assert torch.equal(linear(x, t), plain(x, t))  # W starts at 0: the MLP alone
    weights = torch.arange(36.0).reshape(6, 6)
    with torch.no_grad():
        linear.linear_weight.copy_(weights)
    # by hand: the history's rows of W summed, each item's own weight left out
    by_hand = torch.stack([sum(weights[i] * (torch.arange(6) != i) for i in row.nonzero().flatten())
                           for row in x])
    assert torch.allclose(linear(x, t) - plain(x, t), by_hand)
    # in training the term reads the bits the input dropout kept, each times 1 / (1 - p)
    linear.train()
    torch.manual_seed(1)
    kept = torch.nn.functional.dropout(torch.nn.functional.normalize(x, dim=-1), 0.5) != 0
    torch.manual_seed(1)
    trained_view = linear(x, t)
    plain.train()
    torch.manual_seed(1)
    mlp = plain(x, t)
    expected = torch.stack([sum(2 * weights[i] * (torch.arange(6) != i) for i in row.nonzero().flatten())
                            if row.any() else torch.zeros(6) for row in kept.float()])
    assert torch.allclose(trained_view - mlp, expected)


def test_the_ensembles_table_reports_every_metric_and_the_blend_is_chosen_on_validation(tmp_path):
    finished = subprocess.run([sys.executable, "benchmarks/ensembles.py", *TINY, "train.epochs=3", "train.patience=3",
                               "eval.metrics=[recall@20,ndcg@100]", "eval.select=ndcg@100", "--splits", "0",
                               "--members", "2", "--root", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr
    rows = {}
    for line in finished.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "variant":
            rows[cells[0]] = cells
    assert set(rows) == {"single", "seeds (2)", "seeds (2) + EASE", "EASE"}
    assert rows["EASE"][4:] == ["1.000", "1.000"]  # EASE over itself, for both metrics
    # w = 0 and w = 1 rank as the seed mean and as EASE do, so the weight chosen on validation does no worse
    blend_valid = float(rows["seeds (2) + EASE"][1])
    assert blend_valid >= max(float(rows["seeds (2)"][1]), float(rows["EASE"][1]))
    # the first member's test values are those its own run wrote
    import yaml
    configs = {run: yaml.safe_load((run / "config.yaml").read_text()) for run in tmp_path.glob("ml1m/*")}
    first = [run for run, config in configs.items() if config["seed"] == 0 and config["model"]["kind"] == "binomial"]
    assert len(first) == 1
    written = json.loads((first[0] / "metrics.json").read_text())["test"]
    assert rows["single"][2] == f"{written['recall@20']:.4f}"
    assert rows["single"][3].startswith(f"{written['ndcg@100']:.4f}")


def test_the_mask_reading_benchmark_reads_every_case_and_prints_its_command():
    data = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
    if not (data / "brats2015_deepmedic").is_dir():
        pytest.skip("the BraTS 2015 cases are not here")
    finished = subprocess.run([sys.executable, "benchmarks/mask_read.py", "--variants", "labels", "--msd", "2",
                               "--data-dir", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0].startswith("command: python benchmarks/mask_read.py --msd 2 ") and "--variants labels" in lines[0]
    read = [line.split() for line in lines if line.split()[1:2] == ["labels"]]
    assert [(words[0], words[2]) for words in read] == [("brats", "6"), ("msd", "2")]  # every case, once


def test_the_mask_baselines_benchmark_prints_six_rows_and_its_command():
    data = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
    if not (data / "msd_hippocampus").is_dir():
        pytest.skip("the MSD hippocampus masks are not here")
    finished = subprocess.run([sys.executable, "benchmarks/mask_baselines.py", "--masks", "3", "--data-dir", str(data)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0] == "command: " + shlex.join(["python", "benchmarks/mask_baselines.py", "--data-dir", str(data),
                                                 "--masks", "3", "--seed", "0"])
    assert ", 3 of " in lines[1] and " masks, " in lines[1]
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0] in (
        "alternate_linear", "alternate_shape", "flip_median", "box_empty", "box_closing", "random_shape")]
    assert [row[0] for row in rows] == ["alternate_linear", "alternate_shape", "flip_median", "box_empty",
                                        "box_closing", "random_shape"]
    assert all(0 < float(row[1]) <= 1 for row in rows)
    assert lines[-1].startswith("3 masks in ")


def test_the_linear_interpolation_baseline_keeps_what_half_of_the_neighbours_hold():
    spec = importlib.util.spec_from_file_location("mask_baselines_benchmark", ROOT / "benchmarks" / "mask_baselines.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import numpy as np

    mask = np.zeros((1, 3, 5), dtype=np.uint8)
    mask[0, :, 0] = [1, 1, 0]  # slice 0
    mask[0, :, 2] = [0, 1, 1]  # slice 2
    mask[0, :, 4] = [0, 0, 1]  # slice 4
    known = np.ones(mask.shape, dtype=bool)
    known[..., 1] = known[..., 3] = False
    observed = np.where(known, mask, 0)
    observed[0, 0, 3] = 1  # a hidden voxel's observed value is not read
    filled = bench.linear_interpolation(observed, known, axis=2)
    # by hand: slice 1 = mean of slices 0 and 2 >= 1/2 = either; slice 3 likewise from slices 2 and 4
    assert filled[0, :, 1].tolist() == [1, 1, 1] and filled[0, :, 3].tolist() == [0, 1, 1]
    assert np.array_equal(filled[..., ::2], mask[..., ::2])  # visible slices unchanged
    known[..., 2] = False  # slices 1-3 between slices 0 and 4: weights 3/4, 1/2 and 1/4 on slice 0
    assert bench.linear_interpolation(observed, known, axis=2)[0, :, 1:4].tolist() == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    known[..., 4] = False  # slices 2-4 have slice 0 on one side only: copied
    assert bench.linear_interpolation(observed, known, axis=2)[0, :, 1:].tolist() == [[1] * 4, [1] * 4, [0] * 4]
