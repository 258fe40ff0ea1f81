"""Classifiers from files that load without pickle: torch.export programs, TorchScript, and
safetensors weights for a named architecture (advstudy's, torchvision's or timm's).

A user's file is never unpickled. ``torch.export.load`` itself may unpickle (pickled
weights, opaque constants, the sample inputs, a weights_only=False fallback) and runs
the program's guards with ``exec``, so a ``.pt2`` is read here from its JSON and raw
tensor payloads only: anything pickled is refused, the sample inputs and guards are
dropped, symbolic expressions (which the deserializer hands to ``sympy.sympify``, an
``eval``) must be plain arithmetic over shape symbols, and every call in the graph must
be a PyTorch operator. TorchScript goes through ``torch.jit.load``, whose C++ reader
resolves only TorchScript types. A plain ``torch.save`` archive is refused.

Normalisation belongs to the model (``Normalized``): every caller gives images in [0, 1].
"""

from __future__ import annotations

import enum
import io
import json
import math
import operator
import re
import tokenize
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from attacks.engine.architectures import architecture_names, build_architecture

FORMATS_SENTENCE = (
    "Models load from a torch.export program (.pt2, torch.export.save), a TorchScript file "
    "(torch.jit.save), or a safetensors state dict with an architecture name "
    "(safetensors.torch.save_file); pickled files, such as torch.save(model) or "
    "torch.save(state_dict), are never loaded."
)


class ModelFileError(ValueError):
    """The file cannot be loaded as a classifier; the message says why in a sentence."""


class ModelFormat(enum.StrEnum):
    # Weights advstudy wrote itself (training, the zoo): never a user's file.
    STATE_DICT = "state_dict"
    TORCH_EXPORT = "torch_export"
    TORCHSCRIPT = "torchscript"
    SAFETENSORS = "safetensors"


class ArchitectureSource(enum.StrEnum):
    ADVSTUDY = "advstudy"
    TORCHVISION = "torchvision"
    TIMM = "timm"


@dataclass(frozen=True)
class InputShape:
    """What the model is fed: (N, channels, size, size) images in [0, 1]; classes logits."""

    channels: int
    size: int
    classes: int


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


class Normalized(nn.Module):
    """(x - mean) / std before the network: the model takes images in [0, 1]."""

    def __init__(self, network: nn.Module, normalization: Normalization, channels: int):
        super().__init__()
        self.network = network
        shape = (1, -1, 1, 1)
        mean = _per_channel(normalization.mean, channels, "mean")
        std = _per_channel(normalization.std, channels, "std")
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).reshape(shape))
        self.register_buffer("std", torch.tensor(std).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - self.mean) / self.std)


class ProgramClassifier(nn.Module):
    """A loaded program (TorchScript, or an exported program's module) as a plain module.

    TorchScript refuses ``requires_grad_``, which attacks use to freeze the parameters;
    an exported program's module refuses ``eval()`` and ``train()``: its mode was fixed
    when it was exported (export in eval mode), so here switching is a no-op.
    """

    def __init__(self, program: nn.Module, *, mode_fixed: bool):
        super().__init__()
        self.program = program
        self.mode_fixed = mode_fixed

    def train(self, mode: bool = True) -> ProgramClassifier:
        self.training = mode
        if not self.mode_fixed:
            self.program.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


class GreyAsRGB(nn.Module):
    """Grey images repeated on three channels, for torchvision's colour classifiers."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.expand(-1, 3, -1, -1))


def _per_channel(values: Sequence[float], channels: int, what: str) -> list[float]:
    if len(values) == 1:
        values = list(values) * channels
    if len(values) != channels or not all(math.isfinite(value) for value in values):
        raise ModelFileError(f"the normalisation {what} needs 1 or {channels} finite values")
    if what == "std" and any(value <= 0 for value in values):
        raise ModelFileError("the normalisation std must be positive")
    return [float(value) for value in values]


def parse_normalization(text: str) -> Normalization | None:
    """``"0.1307,0.3081"`` or ``"0.485/0.456/0.406,0.229/0.224/0.225"`` (mean, std).

    None where the text is blank: the model takes [0, 1] images as they are.
    """
    if not text.strip():
        return None
    parts = text.split(",")
    try:
        mean, std = ([float(v) for v in part.split("/")] for part in parts)
    except ValueError:
        raise ModelFileError(
            "the normalisation is MEAN,STD, with per-channel values separated by '/' "
            "(e.g. 0.1307,0.3081 or 0.485/0.456/0.406,0.229/0.224/0.225)"
        ) from None
    return Normalization(tuple(mean), tuple(std))


_UNPACK_SLACK_BYTES = 64 * 1024 * 1024


def detect_format(path: Path) -> ModelFormat:
    """The file's format from its bytes, never its name; refuses pickles with a sentence."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if len(head) >= 9 and head[8:9] == b"{" and _safetensors_header_ok(path, head):
        return ModelFormat.SAFETENSORS
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"This file is not a model advstudy can read. {FORMATS_SENTENCE}")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        unpacked = sum(entry.file_size for entry in archive.infolist())
    # PyTorch stores tensors uncompressed; only small code files are deflated. An archive
    # that would unpack to far more than its size is refused before a loader inflates it.
    if unpacked > 2 * path.stat().st_size + _UNPACK_SLACK_BYTES:
        raise ModelFileError(
            f"This archive unpacks to {unpacked:,} bytes, far more than its size: "
            "PyTorch writes its tensors uncompressed."
        )
    if any(name.endswith("/archive_format") for name in names) or any(
        "/models/" in name and name.endswith(".json") for name in names
    ):
        return ModelFormat.TORCH_EXPORT
    if any("/code/__torch__/" in name for name in names) and any(
        name.endswith("/constants.pkl") for name in names
    ):
        return ModelFormat.TORCHSCRIPT
    raise ModelFileError(
        f"This file is a pickled PyTorch archive (torch.save), which is never loaded. "
        f"{FORMATS_SENTENCE}"
    )


def _safetensors_header_ok(path: Path, head: bytes) -> bool:
    header_size = int.from_bytes(head[:8], "little")
    return 2 <= header_size <= min(path.stat().st_size - 8, 100 * 1024 * 1024)


def load_model_file(
    path: Path,
    model_format: ModelFormat,
    shape: InputShape,
    *,
    architecture: str = "",
    source: ArchitectureSource | None = None,
    normalization: Normalization | None = None,
) -> nn.Module:
    """The classifier on the CPU in eval mode, taking [0, 1] images of ``shape``."""
    try:
        network = _load(path, model_format, shape, architecture, source)
    except ModelFileError:
        raise
    except Exception as error:
        raise ModelFileError(
            f"The {_described(model_format)} could not be loaded: {error}"
        ) from error
    if normalization is not None:
        network = Normalized(network, normalization, shape.channels)
    return network.eval()


def _described(model_format: ModelFormat) -> str:
    return {
        ModelFormat.STATE_DICT: "weights file",
        ModelFormat.TORCH_EXPORT: "torch.export program",
        ModelFormat.TORCHSCRIPT: "TorchScript file",
        ModelFormat.SAFETENSORS: "safetensors state dict",
    }[model_format]


def _load(
    path: Path,
    model_format: ModelFormat,
    shape: InputShape,
    architecture: str,
    source: ArchitectureSource | None,
) -> nn.Module:
    if model_format == ModelFormat.TORCH_EXPORT:
        return load_export_program(path)
    if model_format == ModelFormat.TORCHSCRIPT:
        program = torch.jit.load(str(path), map_location="cpu")
        return ProgramClassifier(program, mode_fixed=False)
    if model_format == ModelFormat.SAFETENSORS:
        return load_safetensors(path, build_named_architecture(architecture, source, shape))
    # advstudy's own weights: a state dict it wrote, read with weights_only.
    network = build_named_architecture(architecture, ArchitectureSource.ADVSTUDY, shape)
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    return network


# Architectures ------------------------------------------------------------------------


def build_named_architecture(
    name: str, source: ArchitectureSource | None, shape: InputShape
) -> nn.Module:
    """An untrained network of a registered architecture shaped for the dataset (no weights
    are ever downloaded)."""
    if not name:
        raise ModelFileError("A safetensors state dict needs an architecture name.")
    source = source or guess_source(name)
    if source == ArchitectureSource.ADVSTUDY:
        if name not in architecture_names():
            raise ModelFileError(f"Unknown advstudy architecture {name!r}.")
        return build_architecture(name, shape.channels, shape.classes, shape.size)
    if source == ArchitectureSource.TORCHVISION:
        import torchvision

        if name not in torchvision.models.list_models():
            raise ModelFileError(f"Unknown torchvision architecture {name!r}.")
        network = torchvision.models.get_model(name, weights=None, num_classes=shape.classes)
        return GreyAsRGB(network) if shape.channels == 1 else network
    import timm

    if not timm.is_model(name):
        raise ModelFileError(f"Unknown timm architecture {name!r}.")
    return timm.create_model(
        name, pretrained=False, num_classes=shape.classes, in_chans=shape.channels
    )


def guess_source(name: str) -> ArchitectureSource:
    """advstudy's own names first, then torchvision's, then timm's."""
    if name in architecture_names():
        return ArchitectureSource.ADVSTUDY
    import torchvision

    if name in torchvision.models.list_models():
        return ArchitectureSource.TORCHVISION
    return ArchitectureSource.TIMM


def load_safetensors(path: Path, network: nn.Module) -> nn.Module:
    from safetensors.torch import load_file

    state = load_file(str(path), device="cpu")
    target = network.network if isinstance(network, GreyAsRGB) else network
    result = target.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(
            "The state dict does not fit the architecture: "
            f"missing {_few(result.missing_keys)}, unexpected {_few(result.unexpected_keys)}."
        )
    return network


def _few(keys: Sequence[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


# torch.export programs, read without pickle ----------------------------------------------

# Arithmetic a graph may call besides PyTorch's operators: no attribute getters, no
# operator.call, nothing that reaches an object's internals.
_OPERATOR_FUNCTIONS = {
    getattr(operator, name)
    for name in [
        "getitem",
        "add",
        "sub",
        "mul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "neg",
        "pos",
        "abs",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and_",
        "or_",
        "xor",
        "not_",
        "invert",
        "lshift",
        "rshift",
    ]
}
_TARGET = re.compile(
    r"^(torch\.ops\.[a-z][a-z0-9_]*\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?"
    r"|_operator\.[a-z_]+|math\.[a-z0-9_]+|torch\.sym_[a-z_]+|torch\._sym_sqrt)$"
)
_SYMBOL = re.compile(r"^[a-z]+\d+$")
_SYMBOL_STRING = re.compile(r"^'[a-z]+\d+'$")
# Names an expression may use: sympy's constructors and torch's shape functions, the
# keyword flags of Symbol(...), and shape symbols such as s0 (no attribute access, no
# dunders, no other names: sympify evaluates the string).
_EXPRESSION_NAMES = {
    *[
        "Symbol",
        "Integer",
        "Rational",
        "Float",
        "Max",
        "Min",
        "Abs",
        "Mul",
        "Add",
        "Pow",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
    ],
    *[
        "oo",
        "true",
        "false",
        "True",
        "False",
        "positive",
        "integer",
        "nonnegative",
        "negative",
        "real",
        "finite",
    ],
    *[
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
        "OpaqueUnaryFn_sqrt",
        "BitwiseFn_bitwise_and",
        "BitwiseFn_bitwise_or",
    ],
}
_EXPRESSION_OPERATORS = {"+", "-", "*", "/", "//", "**", "%", "(", ")", ",", "=", "<", ">"}


def load_export_program(path: Path) -> nn.Module:
    """A ``torch.export.save`` archive as a runnable module, without unpickling anything."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    from torch.export.pt2_archive._package import (
        PT2ArchiveReader,
        _load_constants,
        _load_state_dict,
    )

    with PT2ArchiveReader(str(path)) as archive:
        names = archive.get_file_names()
        programs = [name for name in names if name.startswith("models/")]
        if programs != ["models/model.json"]:
            raise ModelFileError("A .pt2 file must hold exactly one exported program, 'model'.")
        if any(name.startswith("data/aotinductor/") for name in names):
            raise ModelFileError("AOTInductor packages (compiled code) are not loaded.")
        _refuse_pickled_payloads(archive, names)
        program = json.loads(archive.read_string("models/model.json"))
        _check_program(program)
        program["guards_code"] = []  # exec'd by torch on ep.module(); the dataset is checked
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        state_dict = _load_state_dict(archive, "model")
        constants = _load_constants(archive, "model")
    exported = ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    _check_targets(exported.graph_module)
    return ProgramClassifier(exported.module(), mode_fixed=True)


def _refuse_pickled_payloads(archive: Any, names: list[str]) -> None:
    for kind in ("weights", "constants"):
        if f"data/{kind}/model.pt" in names:
            raise ModelFileError(f"This .pt2 file keeps its {kind} pickled (an old format).")
        config_name = f"data/{kind}/model_{kind}_config.json"
        if config_name not in names:
            raise ModelFileError(f"This .pt2 file has no {kind} table.")
        config = json.loads(archive.read_string(config_name)).get("config", {})
        for entry in config.values():
            if entry.get("use_pickle") or not str(entry.get("path_name", "")).startswith(
                ("weight_", "tensor_")
            ):
                raise ModelFileError(
                    f"This .pt2 file holds pickled {kind} or objects, which are never loaded."
                )


def _check_program(program: dict[str, Any]) -> None:
    for key, value in _walk(program):
        if key == "target" and isinstance(value, str) and not _TARGET.match(value):
            raise ModelFileError(f"The program calls {value!r}, which is not a PyTorch operator.")
        if key == "expr_str" and isinstance(value, str):
            _check_expression(value)
        if key == "metadata" and isinstance(value, dict):
            value.clear()  # module paths and stack traces of the writer's machine: not needed


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _check_expression(text: str) -> None:
    """A shape expression must be arithmetic over shape symbols: sympify evaluates it."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        raise ModelFileError(f"The program has an unreadable shape expression {text!r}.") from None
    for token in tokens:
        kind, string = token.type, token.string
        fine = (
            kind in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.NL)
            or (kind == tokenize.NAME and (string in _EXPRESSION_NAMES or _SYMBOL.match(string)))
            or (kind == tokenize.STRING and _SYMBOL_STRING.match(string))
            or (kind == tokenize.OP and string in _EXPRESSION_OPERATORS)
        )
        if not fine:
            raise ModelFileError(f"The program has a shape expression advstudy refuses: {text!r}.")


def _check_targets(module: torch.fx.GraphModule) -> None:
    """Every call is an operator: what the JSON named resolved to nothing else."""
    allowed = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)
    for submodule in module.modules():
        if not isinstance(submodule, torch.fx.GraphModule):
            continue
        for node in submodule.graph.nodes:
            if node.op != "call_function":
                continue
            target = node.target
            if isinstance(target, allowed) or target in _OPERATOR_FUNCTIONS:
                continue
            if getattr(target, "__module__", None) == "math" or _is_sym_function(target):
                continue
            raise ModelFileError(f"The program calls {target!r}, which is not a PyTorch operator.")


def _is_sym_function(target: object) -> bool:
    name = getattr(target, "__name__", "")
    return name.startswith(("sym_", "_sym_")) and getattr(torch, name, None) is target


def check_logits(logits: torch.Tensor, count: int, classes: int) -> None:
    """The model's answer to ``count`` images: (count, classes) finite logits."""
    if not isinstance(logits, torch.Tensor):
        raise ModelFileError(f"The model returns {_kind_of(logits)}, not a tensor of logits.")
    if tuple(logits.shape) != (count, classes):
        raise ModelFileError(
            f"The model returns logits of shape {tuple(logits.shape)} for {count} images; "
            f"the dataset needs ({count}, {classes})."
        )
    if not torch.isfinite(logits).all():
        raise ModelFileError("The model returns non-finite logits (NaN or infinity).")


def _kind_of(value: object) -> str:
    """A model's output in words, for a researcher who never named Python's classes."""
    if isinstance(value, tuple | list):
        return f"a sequence of {len(value)} outputs"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} outputs"
    return "something else"


def read_in_chunks(handle: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := handle.read(chunk_size):
        yield chunk
