"""PGD-40 L-inf throughput: advstudy's PGD against torchattacks' and the bound of both.

    .venv/bin/python benchmarks/bench_pgd.py [--device cuda] [--batch-size 1024] [--compile]

The bound is the bare loop every PGD runs: 40 x (forward, input gradient, signed
step, projection) on a frozen model, in PyTorch's default layout (the plain
bound) and in the channels-last layout that advstudy's driver uses (its own
bound). Contenders run interleaved, on the same trained model, inputs and batch;
the table gives the median of the repeats. With --compile, advstudy's PGD also runs
on the model compiled by torch.compile (inductor; on CUDA also "reduce-overhead",
which captures CUDA graphs), each against torchattacks on the plain model.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
import torchattacks
from torch import nn

from attacks.engine.architectures import build_architecture
from attacks.engine.attacks import build_attack
from attacks.engine.datasets import load_dataset
from attacks.engine.training import TrainingConfig, train
from attacks.engine.zoo import load_zoo_model

EPS, STEP, STEPS = 0.3, 0.01, 40


def trained(architecture: str, device: torch.device) -> nn.Module:
    """The shipped FGSM-RS small CNN; other architectures trained here for one epoch."""
    if architecture == "small_cnn":
        return load_zoo_model("mnist-small-cnn-fgsm-rs-0.3").to(device)
    data = load_dataset("mnist", "test")
    torch.manual_seed(0)
    model = build_architecture(architecture)
    return train(
        model,
        data.as_float(slice(0, 8000)),
        data.labels[:8000],
        TrainingConfig(epochs=1),
        device=device,
    )


def bound_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y)
        (gradient,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + STEP * gradient.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - EPS), x + EPS).clamp(0, 1)
    return x_adv


Contender = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def advstudy_pgd(model: nn.Module, device: torch.device) -> Contender:
    attack = build_attack("pgd_linf", {"eps": EPS, "step_size": STEP, "steps": STEPS})

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack(model, x, y, generator=torch.Generator(device).manual_seed(0)).x_adv

    return run


def compiled_contenders(model: nn.Module) -> dict[str, Contender]:
    device = next(model.parameters()).device
    modes = ["default"] + (["reduce-overhead"] if device.type == "cuda" else [])
    return {
        f"advstudy compiled ({mode})": advstudy_pgd(
            cast(nn.Module, torch.compile(model, mode=mode)), device
        )
        for mode in modes
    }


def contenders(model: nn.Module) -> dict[str, Contender]:
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=STEPS, random_start=True)
    device = next(model.parameters()).device
    run_ours = advstudy_pgd(model, device)

    def run_bound(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with frozen(model, channels_last=False):
            return bound_loop(model, x, y)

    def run_bound_channels_last(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with frozen(model, channels_last=True):
            return bound_loop(model, x, y)

    return {
        "advstudy": run_ours,
        "torchattacks": theirs,
        "bound": run_bound,
        "bound_channels_last": run_bound_channels_last,
    }


@contextmanager
def frozen(model: nn.Module, *, channels_last: bool) -> Iterator[None]:
    model.requires_grad_(False)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.requires_grad_(True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    architecture: str, device: torch.device, batch_size: int, repeats: int, compile: bool
) -> dict:
    model = trained(architecture, device).eval()
    data = load_dataset("mnist", "test")
    x = data.as_float(slice(0, batch_size)).to(device)
    y = data.labels[:batch_size].to(device)
    runs = contenders(model) | (compiled_contenders(model) if compile else {})
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    accuracy: dict[str, float] = {}
    for repeat in range(repeats + 1):  # the first round warms up and is not counted
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            x_adv = run(x, y)
            synchronize(device)
            if repeat:
                seconds[name].append(time.perf_counter() - start)
            with torch.no_grad():
                accuracy[name] = float((model(x_adv).argmax(1) == y).float().mean())
    rate = {name: batch_size / statistics.median(times) for name, times in seconds.items()}
    return {"architecture": architecture, "rate": rate, "accuracy": accuracy}


def table_row(architecture: str, rate: dict[str, float]) -> str:
    ours = rate["advstudy"]
    cells = [
        architecture,
        f"{ours:.0f}",
        f"{rate['torchattacks']:.0f}",
        f"{rate['bound']:.0f}",
        f"{rate['bound_channels_last']:.0f}",
        f"{ours / rate['torchattacks']:.2f}x",
        f"{ours / rate['bound']:.2f}",
        f"{ours / rate['bound_channels_last']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--architectures", default="small_cnn,madry_cnn")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"PGD-40 L-inf eps {EPS}, batch {args.batch_size}, {device} "
        f"({torch.get_num_threads()} threads), median of {args.repeats}; torch {torch.__version__}"
    )
    print()
    print(
        "| model | advstudy ex/s | torchattacks ex/s | plain bound ex/s | channels-last bound "
        "ex/s | advstudy / torchattacks | advstudy / plain bound | advstudy / channels-last "
        "bound |"
    )
    print("|---|---|---|---|---|---|---|---|")
    accuracies, compiled = [], []
    for architecture in args.architectures.split(","):
        result = measure(architecture, device, args.batch_size, args.repeats, args.compile)
        print(table_row(architecture, result["rate"]))
        rate = result["rate"]
        compiled += [
            f"| {architecture} | {name} | {value:.0f} | {value / rate['torchattacks']:.2f}x |"
            for name, value in rate.items()
            if name.startswith("advstudy compiled")
        ]
        accuracy = ", ".join(f"{name} {value:.3f}" for name, value in result["accuracy"].items())
        accuracies.append(f"{architecture}: {accuracy}")
    if compiled:
        print()
        print("| model | contender | ex/s | / torchattacks |")
        print("|---|---|---|---|")
        print("\n".join(compiled))
    print()
    print("Accuracy on the attacked batch (the same model and inputs for every contender):")
    for line in accuracies:
        print(f"- {line}")


if __name__ == "__main__":
    main()
