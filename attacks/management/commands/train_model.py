"""Train a classifier with a recipe, evaluate it, and optionally export it to the zoo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from attacks import services
from attacks.engine.architectures import architecture_names
from attacks.engine.training import PGD_NORMS, RECIPES, SCHEDULES
from attacks.management.progress import progress_bar, wait_for
from attacks.models import ClassifierModel, JobStatus

ZOO_MANIFEST = "zoo.json"


def index_range(text: str) -> tuple[int, int]:
    start, _, stop = text.partition(":")
    return int(start), int(stop)


class Command(BaseCommand):
    help = "Train a model (standard, pgd_at, fgsm_rs or ibp), evaluate it, optionally export it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--architecture", default="small_cnn", choices=architecture_names())
        parser.add_argument("--recipe", default="standard", choices=RECIPES)
        parser.add_argument("--eps", type=float, default=0.3, help="training budget")
        parser.add_argument("--epochs", type=int, default=2)
        parser.add_argument("--batch-size", type=int, default=128)
        parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak if cyclic")
        parser.add_argument("--lr-schedule", default="constant", choices=SCHEDULES)
        parser.add_argument(
            "--pgd-norm", default="linf", choices=PGD_NORMS, help="pgd_at's threat model"
        )
        parser.add_argument("--pgd-steps", type=int, default=40, help="pgd_at's attack steps")
        parser.add_argument("--pgd-step-size", type=float, default=0.01)
        parser.add_argument(
            "--fgsm-step-ratio", type=float, default=1.25, help="fgsm_rs's step / eps"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--dataset", default="mnist")
        parser.add_argument("--train-split", default="train")
        parser.add_argument("--train-range", type=index_range, default=(0, 60000))
        parser.add_argument("--eval-split", default="test")
        parser.add_argument("--eval-range", type=index_range, default=(0, 10000))
        parser.add_argument("--eval-eps", type=float, help="default: the training eps")
        parser.add_argument("--eval-steps", type=int, default=100)
        parser.add_argument("--eval-step-size", type=float, default=0.01)
        parser.add_argument("--eval-restarts", type=int, default=1)
        parser.add_argument("--eval-norm", default="linf", choices=PGD_NORMS)
        parser.add_argument("--export", type=Path, help="a zoo folder to copy the weights into")

    def handle(self, *args: Any, **options: Any) -> None:
        config = {
            "recipe": options["recipe"],
            "eps": options["eps"],
            "epochs": options["epochs"],
            "batch_size": options["batch_size"],
            "seed": options["seed"],
            "learning_rate": options["learning_rate"],
            "lr_schedule": options["lr_schedule"],
            "pgd_norm": options["pgd_norm"],
            "pgd_steps": options["pgd_steps"],
            "pgd_step_size": options["pgd_step_size"],
            "fgsm_step_ratio": options["fgsm_step_ratio"],
        }
        evaluation = {
            "eps": options["eval_eps"] or options["eps"],
            "steps": options["eval_steps"],
            "step_size": options["eval_step_size"],
            "restarts": options["eval_restarts"],
            "norm": options["eval_norm"],
        }
        with progress_bar("training", f"Training {options['name']}") as show:
            model = services.request_training(
                name=options["name"],
                architecture=options["architecture"],
                dataset=options["dataset"],
                training_split=options["train_split"],
                training_range=options["train_range"],
                evaluation_split=options["eval_split"],
                evaluation_range=options["eval_range"],
                config=config,
                evaluation=evaluation,
            )
            model = wait_for(model, show)
        if model.status != JobStatus.SUCCEEDED:
            raise CommandError(f"training failed: {model.error}")
        self.stdout.write(json.dumps(model_card_entry(model), indent=2))
        if options["export"]:
            export(model, options["export"])


def model_card_entry(model: ClassifierModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "architecture": model.architecture,
        "dataset": model.dataset,
        "weights": f"{model.name}.pt",
        "weights_sha256": model.weights_sha256,
        "training": {
            "split": model.training_split,
            "range": [model.training_start, model.training_stop],
            "config": model.training_config,
        },
        "evaluation": {
            "split": model.evaluation_split,
            "range": [model.evaluation_start, model.evaluation_stop],
            "config": model.evaluation_config,
        },
        "clean_accuracy": model.clean_accuracy,
        "robust_accuracy": model.robust_accuracy,
        "certified_accuracy": model.certified_accuracy,
    }


def export(model: ClassifierModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with model.weights.open("rb") as source, (folder / f"{model.name}.pt").open("wb") as target:
        shutil.copyfileobj(source, target)
    manifest_path = folder / ZOO_MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    manifest = [entry for entry in manifest if entry["name"] != model.name]
    manifest.append(model_card_entry(model))
    manifest = sorted(manifest, key=lambda entry: entry["name"])
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(model_card(manifest))


def _norm(config: dict[str, Any], key: str) -> str:
    return {"linf": "L-inf", "l2": "L2"}[config.get(key, "linf")]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def model_card(manifest: list[dict[str, Any]]) -> str:
    """The zoo's model card, written from zoo.json so that the two never disagree."""
    lines = [
        "# Shipped models",
        "",
        "Written by `manage.py train_model --export` from `zoo.json`; do not edit by hand.",
        "MNIST: LeCun, Cortes and Burges, CC BY-SA 3.0. Weights: state dicts for",
        "`attacks.engine.architectures`, inputs in [0, 1], no normalisation.",
        "",
        "| model | recipe | trained on | clean | PGD robust | IBP certified | evaluated on |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in manifest:
        training, evaluation = entry["training"], entry["evaluation"]
        config, measured = training["config"], evaluation["config"]
        recipe = config["recipe"] + (
            ""
            if config["recipe"] == "standard"
            else f" {_norm(config, 'pgd_norm')} eps {config['eps']}"
        )
        if config.get("lr_schedule", "constant") != "constant":
            recipe += f", {config['lr_schedule']} rate"
        lines.append(
            f"| `{entry['name']}` ({entry['architecture']}) | {recipe}, {config['epochs']} epochs "
            f"| {entry['dataset']} {training['split']} [{training['range'][0]}, "
            f"{training['range'][1]}) | {_percent(entry['clean_accuracy'])} "
            f"| {_percent(entry['robust_accuracy'])} | {_percent(entry['certified_accuracy'])} "
            f"| {entry['dataset']} {evaluation['split']} [{evaluation['range'][0]}, "
            f"{evaluation['range'][1]}): PGD-{measured['steps']} {_norm(measured, 'norm')} "
            f"eps {measured['eps']}, "
            f"step {measured['step_size']}, {measured['restarts']} restarts |"
        )
    lines += ["", "SHA-256 of each weights file:", ""]
    lines += [f"- `{entry['weights']}`: `{entry['weights_sha256']}`" for entry in manifest]
    return "\n".join(lines) + "\n"
