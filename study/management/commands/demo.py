"""Set up a whole demo study on the shipped MNIST sample, then serve it.

Trains a small CNN on MNIST test images [0, 8000), attacks images from
[8000, 10000) with PGD (sensitivity) and Tramèr et al.'s nearest-neighbour
attack (invariance, neighbours from [0, 8000)), adds clean controls, creates a
study and a researcher account, and prints the URLs.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from attacks import services
from attacks.management.progress import progress_bar, wait_for
from attacks.models import AttackSetting, ClassifierModel, JobStatus
from study.models import Study
from study.services import SettingSample, create_study

TRAIN_RANGE = (0, 8000)
ATTACK_RANGE = (8000, 10000)
MODEL_NAME = "demo-small-cnn"
RESEARCHER = "researcher"


class Command(BaseCommand):
    help = "Train, attack, create a study on the shipped MNIST sample, and serve it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--examples", type=int, default=24, help="examples per attack setting (default 24)"
        )
        parser.add_argument("--epochs", type=int, default=2)
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="set up, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        model = self._model(options["epochs"])
        # The shipped standard, adversarially trained and certified models: their
        # predictions on every example let the analysis compare them with humans.
        call_command("import_zoo", stdout=self.stdout)
        settings = self._settings(model)
        for setting in settings:
            self._generate(setting, options["examples"])
        study = self._study(settings, options["examples"])
        password = self._researcher()
        base = f"http://{options['addr']}"
        self.stdout.write(self.style.SUCCESS("\nThe demo is ready."))
        self.stdout.write(
            f"  Annotators join at:  {base}{reverse('join', args=[study.join_token])}"
        )
        self.stdout.write(
            f"  Researchers sign in: {base}{reverse('researcher-home')}"
            f"  (user {RESEARCHER!r}, password {password!r})"
        )
        self.stdout.write(
            f"  Analysis:            {base}{reverse('study-analysis', args=[study.pk])}"
        )
        self.stdout.write(
            f"  Dashboard:           {base}{reverse('study-dashboard', args=[study.pk])}"
        )
        if not options["no_serve"]:
            call_command("serve", addr=options["addr"])

    def _model(self, epochs: int) -> ClassifierModel:
        existing = ClassifierModel.objects.filter(
            name=MODEL_NAME, status=JobStatus.SUCCEEDED
        ).first()
        if existing:
            return existing
        ClassifierModel.objects.filter(name=MODEL_NAME).delete()
        with progress_bar("training", f"Training {MODEL_NAME}") as show:
            model = services.request_training(
                name=MODEL_NAME,
                architecture="small_cnn",
                dataset="mnist",
                training_split="test",
                training_range=TRAIN_RANGE,
                evaluation_split="test",
                evaluation_range=ATTACK_RANGE,
                config={"epochs": epochs},
                # PGD-20 keeps the demo quick; the row records what was measured.
                evaluation={"steps": 20, "step_size": 0.025},
            )
            model = wait_for(model, show)
        if model.status != JobStatus.SUCCEEDED:
            raise CommandError(f"training failed: {model.error}")
        self.stdout.write(
            f"{MODEL_NAME} on MNIST test {ATTACK_RANGE}: clean accuracy "
            f"{model.clean_accuracy:.4f}, PGD-20 L-inf 0.3 accuracy {model.robust_accuracy:.4f}"
        )
        return model

    def _settings(self, model: ClassifierModel) -> list[AttackSetting]:
        specs: list[tuple[str, str, dict[str, Any], ClassifierModel | None]] = [
            ("demo-pgd-linf-0.3", "pgd_linf", {"eps": 0.3, "step_size": 0.01, "steps": 40}, model),
            (
                "demo-nn-invariance-linf-0.3",
                "nn_invariance_linf",
                {
                    "eps": 0.3,
                    "pool_split": "test",
                    "pool_start": TRAIN_RANGE[0],
                    "pool_stop": TRAIN_RANGE[1],
                },
                None,
            ),
            ("demo-clean", "clean", {}, None),
        ]
        settings = []
        for name, attack, config, target in specs:
            setting = AttackSetting.objects.filter(name=name).first()
            if setting is None:
                setting = services.create_attack_setting(
                    name=name,
                    attack_name=attack,
                    config=config,
                    dataset="mnist",
                    source_split="test",
                    source_range=ATTACK_RANGE,
                    seed=2020,
                    target_model=target,
                )
            settings.append(setting)
        return settings

    def _generate(self, setting: AttackSetting, count: int) -> None:
        missing = count - setting.examples.count()
        if missing <= 0:
            return
        with progress_bar("generation", f"Generating {setting.name}") as show:
            job = services.create_generation_job(setting, missing, chunk_size=8)
            job = wait_for(job, show)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"generation failed: {job.error}")

    def _study(self, settings: list[AttackSetting], count: int) -> Study:
        owner = get_user_model().objects.get_or_create(
            username=RESEARCHER, defaults={"is_staff": True}
        )[0]
        existing = Study.objects.filter(owner=owner, title="Demo: which digit is this?").first()
        if existing:
            return existing
        attacked, clean = settings[:-1], settings[-1]
        return create_study(
            owner=owner,
            title="Demo: which digit is this?",
            instructions="Which digit do you see? If it is none of them, or you cannot tell, "
            'choose "None / can\'t tell".',
            samples=[SettingSample(setting, count) for setting in attacked],
            controls=SettingSample(clean, max(1, count // 2)),
            items_per_participant=min(30, count * 2),
            labels_per_item=3,
            seed=2020,
        )

    def _researcher(self) -> str:
        user = get_user_model().objects.get(username=RESEARCHER)
        password = secrets.token_urlsafe(9)
        user.is_staff = True
        user.set_password(password)
        user.save(update_fields=["is_staff", "password"])
        return password
