"""The zoo's agreement with Tramèr et al.'s (ICML 2020) released invariance sets, per model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_on_tramer.py [--output FILE.md] [--keep]

In a SQLite database and media folder of its own (a temporary folder, removed at the end
unless --keep), the script migrates, registers the zoo (``manage.py import_zoo``) and a
researcher ``alice``, then runs section 2 of docs/walkthrough-tramer2020.md as it stands:
its Python block writes the four released sets with their targets (the class of the
released neighbour each automated L-inf image moved toward) and its ``manage.py
import_examples`` commands import them. Running the walkthrough's own commands, rather
than a copy, keeps the two from diverging; the import is the real one, each zoo model
predicting on every stored image.

Then, from those stored predictions (``attacks.models.Prediction``, the rows the analysis
app reads), per zoo model and set: the share predicting the source label (the model keeps
its label) and, where the set has targets, the share predicting the target. Both shares
are the analysis app's ``agreement_with_majority``, with the source label, or the target,
standing in for a human majority: Tramèr et al. released no human labels, so the target
share is agreement with the label the attack aimed at, not with what people saw.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

REPOSITORY = Path(__file__).resolve().parent.parent
WALKTHROUGH = REPOSITORY / "docs" / "walkthrough-tramer2020.md"
IMPORT_SECTION = "## 2."
RESEARCHER = "alice"  # the walkthrough's --user


@dataclass(frozen=True)
class Row:
    """One model's shares on each set, in the sets' order; None where a set has no target."""

    model: str
    source: list[float | None]
    target: list[float | None]


def section_blocks(markdown: str, heading: str) -> list[str]:
    """The ```sh blocks of the section whose heading starts with ``heading``."""
    sections = re.split(r"^(?=## )", markdown, flags=re.MULTILINE)
    section = next((text for text in sections if text.startswith(heading)), None)
    if section is None:
        raise SystemExit(f"{WALKTHROUGH} has no section {heading!r}")
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    if not blocks:
        raise SystemExit(f"{WALKTHROUGH}, section {heading!r}, has no sh block")
    return blocks


def setup_django(folder: Path) -> dict[str, str]:
    """Point this process (and the walkthrough's commands) at the folder's own database."""
    environment = {
        "W": str(folder),
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "MEDIA_ROOT": str(folder / "media"),
        "CELERY_BROKER_URL": "",  # tasks run in the process that queues them
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(environment)
    import django
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("import_zoo", stdout=io.StringIO())
    get_user_model().objects.create_user(RESEARCHER, is_staff=True)
    return environment


def run_walkthrough_imports(environment: dict[str, str], log: Path) -> None:
    """Section 2's shell blocks, in bash from the repository root; the reports go to ``log``."""
    blocks = section_blocks(WALKTHROUGH.read_text(encoding="utf-8"), IMPORT_SECTION)
    script = "set -euo pipefail\n" + "\n".join(blocks)
    with log.open("w", encoding="utf-8") as output:
        # The commands' own tqdm bars go to stderr, shown here; their reports to the log.
        done = subprocess.run(
            ["bash", "-c", script], cwd=REPOSITORY, env={**os.environ, **environment}, stdout=output
        )
    if done.returncode != 0:  # the temporary folder goes: show what the commands said
        sys.exit(f"{log.read_text(encoding='utf-8')}\nthe walkthrough's import failed")


def shares() -> tuple[list[str], list[bool], list[Row]]:
    """Set names, whether each has targets, and each zoo model's shares, from stored rows."""
    import numpy as np

    from analysis.statistics.agreement import agreement_with_majority
    from attacks.engine.zoo import zoo_entries
    from attacks.models import AttackSetting, Prediction

    settings = list(AttackSetting.objects.order_by("pk"))  # the walkthrough's order
    models = [entry["name"] for entry in zoo_entries()]
    rows = {name: Row(name, [], []) for name in models}
    has_target = []
    for setting in tqdm(settings, desc="reading predictions", file=sys.stderr):
        stored = Prediction.objects.filter(example__setting=setting, model__name__in=models)
        by_model: dict[str, list[tuple[int, int, int]]] = {name: [] for name in models}
        for name, label, source, target in stored.values_list(
            "model__name", "label", "example__source_label", "example__target_label"
        ):
            by_model[name].append((label, source, -1 if target is None else target))
        has_target.append(setting.examples.filter(target_label__isnull=False).exists())
        count = setting.examples.count()
        for name, triples in by_model.items():
            # A share over fewer images than the set holds would read as the whole set's.
            assert len(triples) == count, f"{name} predicted {len(triples)} of {count}"
            predicted, sources, targets = np.array(triples).reshape(-1, 3).T
            rows[name].source.append(agreement_with_majority(predicted, sources))
            rows[name].target.append(agreement_with_majority(predicted, targets))
    return [setting.name for setting in settings], has_target, list(rows.values())


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.0f} %"


def markdown_table(names: list[str], has_target: list[bool], rows: list[Row]) -> str:
    header = ["model"]
    for name, targeted in zip(names, has_target, strict=True):
        header += [f"{name} source", f"{name} target"] if targeted else [f"{name} source"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"`{row.model}`"]
        for index, targeted in enumerate(has_target):
            cells.append(percent(row.source[index]))
            if targeted:
                cells.append(percent(row.target[index]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary database, media and import log"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="advstudy-zoo-on-tramer-"))
    try:
        environment = setup_django(folder)
        run_walkthrough_imports(environment, folder / "imports.log")
        names, has_target, rows = shares()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    table = markdown_table(names, has_target, rows)
    print(
        "Share of each set's images on which the model predicts the source label, and the "
        "target\n(the class the image was moved toward; human labels were not released).\n"
    )
    print(table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n", encoding="utf-8")
    kept = f"; kept in {folder}" if args.keep else ""
    print(f"\n{time.perf_counter() - started:.0f} s{kept}")


if __name__ == "__main__":
    main()
