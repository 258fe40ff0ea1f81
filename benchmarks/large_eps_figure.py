"""Tsipras et al.'s (ICLR 2019) large-eps targeted examples, drawn for the docs.

    .venv/bin/python benchmarks/large_eps_figure.py [--eps 4.0] [--out FILE.png]

For each zoo model in --models, one test image of each class is pushed toward the next
class ((y + 1) mod 10) with `pgd_l2_large_targeted`. The figure's first row holds the
clean images, then one row per model. A robust model's examples take on the target's
strokes; a standard model's stay the source digit under noise. As a proxy for "looks like
the target", --judge (a model not attacked) classifies every example: the share it reads
as the target is printed beside the share that reached the target on the attacked model.
"""

from __future__ import annotations

import argparse

import torch

from attacks.engine.attacks import build_attack
from attacks.engine.datasets import load_dataset
from attacks.engine.gradients import one_image_per_class
from attacks.engine.images import encode_png
from attacks.engine.zoo import load_zoo_model


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--eps", type=float, default=4.0)
    parser.add_argument("--models", default="mnist-small-cnn-standard,mnist-wong-cnn-pgd-at-l2-2.0")
    parser.add_argument("--judge", default="mnist-small-cnn-ibp-0.4")
    parser.add_argument("--out", default="docs/figures/large-eps-l2.png")
    args = parser.parse_args()
    data = load_dataset("mnist", "test")
    indices = one_image_per_class(data, 10)
    x, y = data.as_float(indices), data.labels[indices]
    target = (y + 1) % 10
    judge = load_zoo_model(args.judge)
    attacks = [
        build_attack("pgd_l2_large_targeted", {"eps": args.eps, "target_class": int(t)})
        for t in target
    ]
    rows = [x]
    print(f"pgd_l2_large_targeted eps {args.eps}, target (y + 1) mod 10, judge {args.judge}")
    print("| attacked model | reached the target | judge reads the target |")
    print("|---|---|---|")
    for name in args.models.split(","):
        model = load_zoo_model(name)
        x_adv = torch.cat(
            [
                attack(
                    model, x[i : i + 1], y[i : i + 1], generator=torch.Generator().manual_seed(0)
                ).x_adv
                for i, attack in enumerate(attacks)
            ]
        )
        with torch.no_grad():
            reached = float((model(x_adv).argmax(1) == target).float().mean())
            judged = float((judge(x_adv).argmax(1) == target).float().mean())
        print(f"| {name} | {reached:.0%} | {judged:.0%} |")
        rows.append(x_adv)
    grid = torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)
    pixels = (grid * 255).round().clamp(0, 255).to(torch.uint8)
    pixels = pixels.repeat_interleave(3, dim=1).repeat_interleave(3, dim=2)
    with open(args.out, "wb") as handle:
        handle.write(encode_png(pixels))
    print(f"\nwrote {args.out}: row 1 clean, then {', '.join(args.models.split(','))}")


if __name__ == "__main__":
    main()
