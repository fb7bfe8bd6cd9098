"""What a sparse first layer would save in the ML-1M binomial model's training step.

    python benchmarks/sparse_first_layer.py [--users 200] [--items 2810] [--hidden 600]
        [--density 0.02] [--threads 1] [--repeats 20]

The MLP denoiser's first layer multiplies a (users × items) input, a few per cent ones after
input dropout, by its (hidden × items) weight. Timed here, forward and weight gradient (the
input needs none), as one dense product, through a CSR sparse input and through
``embedding_bag`` (the weight as an item table): what the step would save if the first layer
read the input sparse. The rest of the step (the output layer's three products, the loss,
Adam) is unchanged by it. All three give the same output (checked before timing).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=2810)
    parser.add_argument("--hidden", type=int, default=600)
    parser.add_argument("--density", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(args.hidden, args.items, generator=generator, requires_grad=True)
    x = torch.nn.functional.normalize((torch.rand(args.users, args.items, generator=generator) < args.density).float(),
                                      dim=-1)

    def dense():
        return x @ weight.t()

    def csr():
        return torch.sparse.mm(x.to_sparse_csr(), weight.t())

    def bag():
        rows, cols = x.nonzero(as_tuple=True)
        offsets = torch.searchsorted(rows, torch.arange(args.users))
        return torch.nn.functional.embedding_bag(cols, weight.t(), offsets, mode="sum", per_sample_weights=x[rows, cols])

    reference = dense().detach()
    for f in (csr, bag):
        torch.testing.assert_close(f().detach(), reference, rtol=1e-4, atol=1e-5)
    print(f"first layer, {args.users} × {args.items} input at density {args.density}, {args.hidden} units, "
          f"{args.threads} thread(s): forward + weight gradient, best of {args.repeats}")
    for name, f in (("dense", dense), ("sparse CSR", csr), ("embedding_bag", bag)):
        best = float("inf")
        for _ in range(args.repeats + 1):
            weight.grad = None
            started = time.perf_counter()
            f().sum().backward()
            best = min(best, time.perf_counter() - started)
        print(f"{name:>14}: {best * 1000:.1f} ms")
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
