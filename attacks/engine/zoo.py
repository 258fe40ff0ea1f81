"""Trained weights that ship with advstudy (``attacks/zoo``), described by ``zoo.json``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from attacks.engine.architectures import build_architecture
from attacks.engine.datasets import DATASETS
from attacks.engine.training import load_weights

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"


def zoo_entries() -> list[dict[str, Any]]:
    manifest = ZOO_DIR / "zoo.json"
    return json.loads(manifest.read_text()) if manifest.exists() else []


def zoo_entry(name: str) -> dict[str, Any]:
    for entry in zoo_entries():
        if entry["name"] == name:
            return entry
    known = ", ".join(entry["name"] for entry in zoo_entries())
    raise LookupError(f"no model {name!r} in the zoo; known: {known}")


def zoo_weights(entry: dict[str, Any]) -> bytes:
    payload = (ZOO_DIR / entry["weights"]).read_bytes()
    if hashlib.sha256(payload).hexdigest() != entry["weights_sha256"]:
        raise ValueError(f"{entry['weights']} does not match its SHA-256 in zoo.json")
    return payload


def load_zoo_model(name: str) -> nn.Module:
    """The shipped model ``name`` on the CPU, in eval mode, its checksum verified."""
    entry = zoo_entry(name)
    spec = DATASETS[entry["dataset"]]
    network = build_architecture(entry["architecture"], spec.channels, len(spec.classes), spec.size)
    return load_weights(network, zoo_weights(entry))
