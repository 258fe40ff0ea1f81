"""Clean controls: the source image unchanged, through the same pipeline as attacks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks.engine.attacks.base import (
    CLEAN,
    NO_TARGET,
    Attack,
    AttackContext,
    AttackOutput,
    register_attack,
)


@dataclass(frozen=True)
class CleanConfig:
    pass


@register_attack
class Clean(Attack[CleanConfig]):
    name = "clean"
    title = "Clean images (no attack)"
    kind = CLEAN
    config_class = CleanConfig
    needs_model = False

    def _attack(
        self,
        model: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        context: AttackContext,
        keys: torch.Tensor,
    ) -> AttackOutput:
        return AttackOutput(x.clone(), torch.full_like(y, NO_TARGET))
