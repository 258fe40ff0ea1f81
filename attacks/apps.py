from django.apps import AppConfig


class AttacksConfig(AppConfig):
    name = "attacks"
    verbose_name = "Models, attacks and generated examples"
