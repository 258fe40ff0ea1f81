"""Register a classifier from a file: a torch.export program, TorchScript, or safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from attacks import registration
from attacks.engine.datasets import DATASET_NAMES
from attacks.engine.training import EvaluationConfig
from attacks.management.progress import progress_bar
from attacks.management.users import user_named
from attacks.model_loading import input_shape
from attacks.models import ClassifierModel


class Command(BaseCommand):
    help = (
        "Register a model from a file that loads without pickle: a torch.export program "
        "(.pt2), TorchScript, or a safetensors state dict with --architecture (advstudy's, "
        "torchvision's or timm's). Its shapes are checked on the dataset and its clean "
        "accuracy measured on the test split."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--file", type=Path, required=True)
        parser.add_argument(
            "--dataset",
            required=True,
            help=f"{', '.join(DATASET_NAMES)} or a registered dataset's name",
        )
        parser.add_argument(
            "--architecture", default="", help="safetensors only: the architecture's name"
        )
        parser.add_argument(
            "--normalize",
            default="",
            help="MEAN,STD applied inside the model (per channel: 0.485/0.456/0.406,...); "
            "images stay in [0, 1]",
        )
        parser.add_argument("--user", help="the researcher who owns it (default: public)")
        parser.add_argument(
            "--evaluate-eps",
            type=float,
            help="then measure L-inf PGD accuracy at this eps on the accuracy sample",
        )
        parser.add_argument("--evaluate-steps", type=int, default=100)
        parser.add_argument("--evaluate-restarts", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no file {path}")
        try:
            with progress_bar("registration", f"Registering {path.name}"):
                model = registration.register_model(
                    path,
                    name=options["name"],
                    dataset=options["dataset"],
                    architecture=options["architecture"],
                    normalization=options["normalize"],
                    created_by=user_named(options["user"]),
                )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        for line in summary(model):
            self.stdout.write(line)
        if options["evaluate_eps"] is not None:
            self._evaluate(model, options)

    def _evaluate(self, model: ClassifierModel, options: dict[str, Any]) -> None:
        eps, steps = options["evaluate_eps"], options["evaluate_steps"]
        config = EvaluationConfig(
            eps=eps, steps=steps, step_size=2.5 * eps / steps, restarts=options["evaluate_restarts"]
        )
        self.stderr.write(f"Evaluating: PGD-{steps} L-inf {eps}, {config.restarts} restart(s)")
        model = registration.evaluate_registered(model, config)
        self.stdout.write(
            f"  PGD-{steps} accuracy at L-inf {eps} ({config.restarts} restart(s)): "
            f"{model.robust_accuracy:.4f} over the same images"
        )


def summary(model: ClassifierModel) -> list[str]:
    shape = input_shape(model.dataset)
    architecture = (
        f"{model.architecture} ({model.architecture_source})"
        if model.architecture
        else "in the file"
    )
    normalization = model.normalization or "none (the model takes [0, 1] images)"
    return [
        f"Registered {model.name!r} as model {model.pk}.",
        f"  format: {model.get_weights_format_display()}; architecture: {architecture}",
        f"  input: (n, {shape.channels}, {shape.size}, {shape.size}) in [0, 1]; "
        f"output: (n, {shape.classes}) logits, finite",
        f"  normalisation: {normalization}",
        f"  clean accuracy: {model.clean_accuracy:.4f} on {model.dataset}/"
        f"{model.evaluation_split} [{model.evaluation_start}, {model.evaluation_stop})",
        f"  SHA-256: {model.weights_sha256}",
    ]
