from django.apps import AppConfig


class AttacksConfig(AppConfig):
    name = "attacks"
    verbose_name = "Models, attacks and generated examples"

    def ready(self) -> None:
        # The engine cannot import Django: give it the registered datasets this way.
        from attacks.dataset_registry import registered_spec
        from attacks.engine.datasets import set_dataset_resolver

        set_dataset_resolver(registered_spec)
