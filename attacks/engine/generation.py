"""From source indices to stored 8-bit examples: attack, quantise, measure, predict.

Everything about an example that analysis uses is measured here on the
quantised image (docs/architecture.md, rule 1), never on the attack's float output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from attacks.engine.architectures import predict
from attacks.engine.attacks import NO_TARGET, Attack, AttackContext
from attacks.engine.datasets import ImageDataset
from attacks.engine.images import Distances, distances, encode_png, quantize_toward


@dataclass(frozen=True)
class GeneratedExample:
    position: int
    source_index: int
    source_label: int
    target_label: int | None
    png: bytes
    distances: Distances
    predictions: dict[int, int]  # model key -> predicted class on the stored image


def source_order(seed: int, start: int, stop: int) -> torch.Tensor:
    """The setting's fixed order of source indices: a seeded permutation of [start, stop)."""
    generator = torch.Generator().manual_seed(seed)
    return start + torch.randperm(stop - start, generator=generator)


def predict_stored(
    models: Mapping[int, nn.Module], images_uint8: torch.Tensor, device: torch.device
) -> dict[int, list[int]]:
    x = images_uint8.to(device).float().div_(255.0)
    return {key: predict(model, x).cpu().tolist() for key, model in models.items()}


def generate_examples(
    attack: Attack[object],
    target_model: nn.Module | None,
    dataset: ImageDataset,
    positions: list[int],
    source_indices: list[int],
    *,
    generator: torch.Generator,
    device: torch.device,
    context: AttackContext,
    models_to_predict: Mapping[int, nn.Module],
) -> list[GeneratedExample]:
    index = torch.tensor(source_indices, dtype=torch.long)
    clean_uint8 = dataset.images[index]
    labels = dataset.labels[index]
    output = attack(
        target_model,
        clean_uint8.to(device).float() / 255.0,
        labels.to(device),
        generator=generator,
        context=context,
        keys=index,
    )
    stored = quantize_toward(clean_uint8, output.x_adv.cpu())
    measured = distances(clean_uint8, stored)
    predictions = predict_stored(models_to_predict, stored, device)
    targets = output.target.cpu().tolist()
    return [
        GeneratedExample(
            position=position,
            source_index=source_index,
            source_label=int(labels[i]),
            target_label=None if targets[i] == NO_TARGET else int(targets[i]),
            png=encode_png(stored[i]),
            distances=measured[i],
            predictions={key: values[i] for key, values in predictions.items()},
        )
        for i, (position, source_index) in enumerate(zip(positions, source_indices, strict=True))
    ]
