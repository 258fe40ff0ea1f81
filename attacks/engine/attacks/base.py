"""Attack driver, registry and shared pieces (after foolbox 3's ``attacks/base.py``).

An attack is a frozen dataclass config plus a class. ``Attack.__call__`` is the
final driver: it checks inputs, freezes the model for the attack and restores it
afterwards, and checks the output; subclasses fill ``_attack`` (or, for gradient
attacks, the small per-norm hooks of ``GradientAttack``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, final

import torch
from torch import nn

ConfigT = TypeVar("ConfigT")

SENSITIVITY = "sensitivity"
INVARIANCE = "invariance"
CLEAN = "clean"
NO_TARGET = -1


@dataclass(frozen=True)
class AttackContext:
    """Data an attack may need besides the model: the pool of reference images.

    ``prepared`` keeps what an attack derives from the pool (e.g. a search
    index) across the chunks of one job: the context lives as long as the job.
    """

    pool_images: torch.Tensor | None = None  # uint8 (N, C, H, W)
    pool_labels: torch.Tensor | None = None  # int64 (N,)
    num_classes: int = 10
    prepared: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class AttackOutput:
    x_adv: torch.Tensor  # float in [0, 1], same shape as the input
    target: torch.Tensor  # int64, NO_TARGET where the attack has no target


class AttackConfigError(ValueError):
    """An attack's name or configuration is not valid."""


def _has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


@contextmanager
def _channels_last(model: nn.Module) -> Iterator[None]:
    """Channels-last weights during the attack; the very same tensors are put back after.

    It makes oneDNN's and cuDNN's convolutions faster (about 20% for the small
    CNN's forward+backward on a CPU here) and changes no value, only the layout.
    """
    parameters = list(model.parameters())
    saved_data = [parameter.data for parameter in parameters]
    saved_buffers = [
        (module, name, buffer)
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for parameter, data in zip(parameters, saved_data, strict=True):
            parameter.data = data
        for module, name, buffer in saved_buffers:
            module._buffers[name] = buffer


@contextmanager
def frozen_for_attack(model: nn.Module | None) -> Iterator[bool]:
    """Eval mode, frozen parameters and channels-last convolutions during the attack.

    All three are restored afterwards. Yields whether channels-last is in use.
    """
    if model is None:
        yield False
        return
    was_training = model.training
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    convolutional = _has_convolutions(model)
    try:
        if convolutional:
            with _channels_last(model):
                yield True
        else:
            yield False
    finally:
        for parameter, flag in zip(model.parameters(), requires_grad, strict=True):
            parameter.requires_grad_(flag)
        model.train(was_training)


class Attack(ABC, Generic[ConfigT]):
    name: ClassVar[str]
    # The attack as pages and messages name it, e.g. "PGD (L∞)"; ``name`` is its registry key.
    title: ClassVar[str]
    kind: ClassVar[str]
    config_class: ClassVar[type[Any]]
    needs_model: ClassVar[bool] = True
    # The norm its perturbation budget is measured in; None for an attack without a budget.
    norm: ClassVar[str | None] = None

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @property
    def eps(self) -> float | None:
        """The budget in ``norm``: on the 0-1 pixel scale, a pixel count for L0; None if none."""
        return None

    @final
    def __call__(
        self,
        model: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        context: AttackContext | None = None,
        keys: torch.Tensor | None = None,
    ) -> AttackOutput:
        """Attack float images ``x`` in [0, 1] with labels ``y``.

        ``keys`` name the examples (e.g. their dataset indices): each example's
        randomness is drawn from ``generator`` and its key alone, so its result
        does not depend on the batch it is in. Default: positions in the batch.
        """
        if model is None and self.needs_model:
            raise AttackConfigError(f"attack {self.name!r} needs a model")
        if x.ndim != 4 or y.shape != x.shape[:1]:
            raise ValueError(
                f"expected x of shape (N, C, H, W) and y of shape (N,), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError("inputs must lie in [0, 1]")
        if keys is None:
            keys = torch.arange(x.shape[0])
        if keys.shape != y.shape:
            raise ValueError("keys must hold one key per example")
        with frozen_for_attack(model) as channels_last:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            output = self._attack(model, x, y, generator, context or AttackContext(), keys)
        if output.x_adv.shape != x.shape:
            raise AssertionError(f"{self.name} changed the input's shape")
        x_adv = output.x_adv.detach().clamp(0.0, 1.0).contiguous()
        return AttackOutput(x_adv, output.target)

    @abstractmethod
    def _attack(
        self,
        model: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        context: AttackContext,
        keys: torch.Tensor,
    ) -> AttackOutput: ...


_ATTACKS: dict[str, type[Attack[Any]]] = {}
AttackClass = TypeVar("AttackClass", bound=type[Attack[Any]])


def register_attack(cls: AttackClass) -> AttackClass:
    """Register an attack class under its ``name``; a second class with that name is refused."""
    if cls.name in _ATTACKS:
        raise ValueError(f"attack {cls.name!r} is already registered")
    _ATTACKS[cls.name] = cls
    return cls


def attack_names() -> list[str]:
    return sorted(_ATTACKS)


def attack_title(name: str) -> str:
    """The attack as pages name it ("PGD (L∞)"); the name itself if no attack has it."""
    cls = _ATTACKS.get(name)
    return getattr(cls, "title", name) if cls is not None else name


def get_attack_class(name: str) -> type[Attack[Any]]:
    try:
        return _ATTACKS[name]
    except KeyError:
        raise AttackConfigError(
            f'There is no attack "{name}"; the attacks are {", ".join(attack_names())}.'
        ) from None


def build_attack(name: str, config: Mapping[str, Any] | None = None) -> Attack[Any]:
    """The attack ``name`` with ``config`` (missing keys take their defaults)."""
    cls = get_attack_class(name)
    return cls(make_config(cls.config_class, config or {}, title=attack_title(name)))


def make_config(
    config_class: type[ConfigT], values: Mapping[str, Any], *, title: str = "The attack"
) -> ConfigT:
    """The config from ``values``; derived entries (a stored config's) must match their options.

    Refusals are sentences for the researcher who typed the config: they name the attack
    by ``title``, as the pages do, and its options, never the config's class.
    """
    fields = dataclasses.fields(config_class)  # type: ignore[arg-type]
    options = [field.name for field in fields if field.init]
    derived = {field.name for field in fields if not field.init}
    unknown = sorted(set(values) - set(options) - derived)
    if unknown:
        raise AttackConfigError(unknown_options_message(title, unknown, options))
    try:
        config = config_class(**{key: value for key, value in values.items() if key in options})
    except ValueError as error:
        raise AttackConfigError(f"{title}: {error}.") from error
    except OverflowError as error:  # a number too large for a float, e.g. steps = 10**400
        raise AttackConfigError(f"{title}: a number is too large to use.") from error
    except TypeError as error:
        # A value of the wrong kind (a number where a list belongs) fails inside the
        # config's own checks; Python's wording names its types, so say it plainly.
        raise AttackConfigError(
            f"{title}: an option has a value of the wrong kind (a number, a list, true or "
            "false); the defaults listed with its options show the kind each takes."
        ) from error
    for name in sorted(derived & set(values)):
        if values[name] != getattr(config, name):
            raise AttackConfigError(
                f"{title}: {name} is derived from the other options: it is "
                f"{shown(getattr(config, name))}, not {shown(values[name])}."
            )
    return config


def unknown_options_message(title: str, unknown: list[str], options: list[str]) -> str:
    """'PGD (L∞) has no option "epsilon" (did you mean "eps"?); its options are eps, ...'."""
    named = ", ".join(f'"{name}"' for name in unknown)
    message = f"{title} has no option{'s' if len(unknown) > 1 else ''} {named}"
    guesses = [match for name in unknown for match in difflib.get_close_matches(name, options, n=1)]
    if guesses:
        quoted = ", ".join(f'"{guess}"' for guess in guesses)
        message += f" (did you mean {quoted}?)"
    if not options:
        return f"{message}; it takes no options."
    return f"{message}; its options are {', '.join(options)}."


def shown(value: Any) -> str:
    """A config value as the researcher typed it (JSON), not as Python prints it."""
    try:
        return json.dumps(json_ready(value))
    except (TypeError, ValueError):
        return str(value)


def option(default: Any, help_text: str, *, default_text: str | None = None) -> Any:
    """A config field with its meaning, which the new-setting form lists beside its default."""
    metadata = {"help": help_text, "default_text": default_text}
    return field(default=default, metadata=metadata)


def derived(help_text: str) -> Any:
    """A field the config computes from its options: stored with them, never given."""
    return field(init=False, metadata={"help": help_text, "default_text": None})


@dataclass(frozen=True)
class OptionDoc:
    name: str
    default: str  # as JSON, or a sentence where the default is computed
    help: str


def describe_options(config_class: type[Any]) -> list[OptionDoc]:
    """Each option of an attack config with its default and meaning, in declaration order.

    A subclass that only changes a default inherits the meaning from its base's field.
    """
    docs = []
    for item in dataclasses.fields(config_class):
        if not item.init:
            continue
        metadata = _option_metadata(config_class, item.name)
        docs.append(OptionDoc(item.name, _default_text(item, metadata), metadata.get("help", "")))
    return docs


def _option_metadata(config_class: type[Any], name: str) -> Mapping[str, Any]:
    for cls in config_class.__mro__:
        if dataclasses.is_dataclass(cls):
            for item in dataclasses.fields(cls):
                if item.name == name and item.metadata.get("help"):
                    return item.metadata
    return {}


def _default_text(item: dataclasses.Field[Any], metadata: Mapping[str, Any]) -> str:
    if item.default is None and metadata.get("default_text"):
        return str(metadata["default_text"])
    if item.default is not dataclasses.MISSING:
        value = item.default
    elif item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
    else:
        return "required"
    return json.dumps(json_ready(value), sort_keys=True)


def config_as_dict(config: Any) -> dict[str, Any]:
    """The full config, defaults included, as JSON-ready data (provenance)."""
    return json_ready(dataclasses.asdict(config))


def json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def require_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, not {shown(value)}")
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value}")


def require_integer_at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"{name} must be a whole number of at least {minimum}, not {shown(value)}"
            )
