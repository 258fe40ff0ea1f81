"""Settings stored without a step size ran with the old fixed default: write it into their config.

A PGD setting's missing ``step_size`` now means Madry et al.'s 2.5 * eps / steps. Every
setting made through ``create_attack_setting`` stored its full config, step size included;
only a row written by hand may lack it, and its examples were made with the fixed default
of its time, so provenance (docs/architecture.md, rule 3) must keep saying that.
"""

from django.db import migrations

# The defaults before the step followed eps.
OLD_DEFAULT_STEP_SIZE = {"pgd_linf": 0.01, "pgd_l2": 0.01, "pgd_l2_large_targeted": 0.1}


def write_old_default(apps, schema_editor):
    AttackSetting = apps.get_model("attacks", "AttackSetting")
    settings = AttackSetting.objects.filter(attack_name__in=OLD_DEFAULT_STEP_SIZE)
    for setting in settings.iterator():
        if setting.config.get("step_size") is None:
            setting.config["step_size"] = OLD_DEFAULT_STEP_SIZE[setting.attack_name]
            setting.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [("attacks", "0011_owner_protected")]

    operations = [migrations.RunPython(write_old_default, migrations.RunPython.noop)]
