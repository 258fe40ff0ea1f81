"""An attack setting's budget as two typed columns, filled from the configs stored so far."""

from django.db import migrations, models

# The norm each attack's budget is measured in, as the engine's attack classes
# declare it (``Attack.norm``), frozen here as it was when this migration was written.
NORMS = {
    "pgd_linf": "linf",
    "fgsm": "linf",
    "nn_invariance_linf": "linf",
    "pgd_l2": "l2",
    "pgd_l2_large_targeted": "l2",
    "nn_invariance_l2": "l2",
    "pgd_l0": "l0",
}


def budget_of(attack_name, kind, config):
    """(norm, eps) from a stored config, or (None, None) where no budget applies."""
    if kind == "imported":
        claimed = config.get("budget") or {}
        return claimed.get("norm"), claimed.get("eps")
    norm = NORMS.get(attack_name)
    if norm is None:
        return None, None
    # L0 PGD's budget is its count of changed pixels.
    return norm, config.get("pixels" if norm == "l0" else "eps")


def fill_budgets(apps, schema_editor):
    AttackSetting = apps.get_model("attacks", "AttackSetting")
    for setting in AttackSetting.objects.only("attack_name", "kind", "config").iterator():
        norm, eps = budget_of(setting.attack_name, setting.kind, setting.config or {})
        if norm is not None and isinstance(eps, int | float) and eps > 0:
            setting.norm, setting.eps = norm, float(eps)
            setting.save(update_fields=["norm", "eps"])


class Migration(migrations.Migration):
    dependencies = [
        ("attacks", "0005_generationjob_image_pack"),
    ]

    operations = [
        migrations.AddField(
            model_name="attacksetting",
            name="norm",
            field=models.CharField(
                blank=True,
                choices=[("linf", "L-inf"), ("l2", "L2"), ("l0", "L0")],
                max_length=4,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="attacksetting",
            name="eps",
            field=models.FloatField(
                blank=True,
                help_text="On the 0-1 pixel scale; for L0, a count of pixels",
                null=True,
            ),
        ),
        # Going back, the columns are dropped with what they hold: nothing to undo.
        migrations.RunPython(fill_budgets, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="attacksetting",
            constraint=models.CheckConstraint(
                condition=models.Q(("eps__isnull", True), ("norm__isnull", True))
                | models.Q(("eps__gt", 0), ("norm__isnull", False)),
                name="budget_norm_and_eps_together",
            ),
        ),
    ]
