"""Register the shipped models (attacks/zoo) as classifiers, with their measured accuracies."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from attacks import services
from attacks.engine.zoo import zoo_entries, zoo_weights


class Command(BaseCommand):
    help = "Register every model of the shipped zoo that is not registered yet."

    def handle(self, *args: Any, **options: Any) -> None:
        for entry in zoo_entries():
            model, created = services.register_zoo_model(entry, zoo_weights(entry))
            verb = "registered" if created else "already registered"
            self.stdout.write(f"{entry['name']}: {verb} (model {model.pk})")
