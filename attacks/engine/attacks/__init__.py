"""Attacks by name. Importing this package registers every attack."""

from attacks.engine.attacks import clean, invariance, invariance_l0, pgd
from attacks.engine.attacks.base import (
    CLEAN,
    INVARIANCE,
    NO_TARGET,
    SENSITIVITY,
    Attack,
    AttackConfigError,
    AttackContext,
    AttackOutput,
    OptionDoc,
    attack_names,
    build_attack,
    config_as_dict,
    describe_options,
    get_attack_class,
)

__all__ = [
    "CLEAN",
    "INVARIANCE",
    "NO_TARGET",
    "SENSITIVITY",
    "Attack",
    "AttackConfigError",
    "AttackContext",
    "AttackOutput",
    "OptionDoc",
    "attack_names",
    "build_attack",
    "clean",
    "config_as_dict",
    "describe_options",
    "get_attack_class",
    "invariance",
    "invariance_l0",
    "pgd",
]
