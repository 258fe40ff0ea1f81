"""What a setting's stored examples achieved: their distance in its norm, and who was fooled.

Both are read from what was measured on the stored 8-bit images (docs/architecture.md,
rule 1): an example's distances and each model's prediction on it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from django.db.models import F

from attacks.models import AttackSetting, Example, GenerationJob, Norm, Prediction

_DISTANCE_FIELD: dict[str, str] = {
    Norm.LINF: "linf_distance",
    Norm.L2: "l2_distance",
    Norm.L0: "l0_distance",
}
# Fewer of the first chunk's examples than this share fooling the target: the page warns.
RARELY_FOOLED = 0.25


@dataclass(frozen=True)
class AchievedDistance:
    norm: str  # its label, e.g. "L2"
    median: float
    largest: float
    measured: int  # examples with a known distance
    unknown: int  # examples whose source image is unknown (some imports)


@dataclass(frozen=True)
class FooledOnFirstChunk:
    fooled: int
    examples: int
    targeted: bool

    @property
    def rarely(self) -> bool:
        return self.fooled < RARELY_FOOLED * self.examples


def achieved_distance(setting: AttackSetting) -> AchievedDistance | None:
    """Median and largest distance of the setting's examples in its own norm; None if none."""
    if setting.norm is None:
        return None
    values = list(
        Example.objects.filter(setting=setting).values_list(
            _DISTANCE_FIELD[setting.norm], flat=True
        )
    )
    known = [float(value) for value in values if value is not None]
    if not known:
        return None
    label = Norm(setting.norm).label
    return AchievedDistance(
        label, statistics.median(known), max(known), len(known), len(values) - len(known)
    )


def fooled_on_first_chunk(job: GenerationJob) -> FooledOnFirstChunk | None:
    """How many examples of the job's first chunk fooled the setting's target model.

    Fooled: the model's prediction on the stored image is the target (a targeted
    attack) or differs from the source label. None until the first chunk is stored,
    and for settings with no target model to fool.
    """
    setting = job.setting
    if setting.target_model_id is None or setting.kind != AttackSetting.Kind.SENSITIVITY:
        return None
    size = min(job.chunk_size, job.count)
    # One row per example of the chunk: the target model's prediction on it.
    predictions = Prediction.objects.filter(
        model_id=setting.target_model_id,
        example__job=job,
        example__position__gte=job.offset,
        example__position__lt=job.offset + size,
    )
    examples = predictions.count()
    if examples < size:
        return None
    targeted = predictions.filter(example__target_label__isnull=False).exists()
    if targeted:
        fooled = predictions.filter(label=F("example__target_label")).count()
    else:
        fooled = predictions.exclude(label=F("example__source_label")).count()
    return FooledOnFirstChunk(fooled, examples, targeted)


def first_chunk_warnings(setting: AttackSetting) -> list[tuple[GenerationJob, FooledOnFirstChunk]]:
    """The setting's jobs whose first chunk rarely fooled the target model."""
    found = ((job, fooled_on_first_chunk(job)) for job in setting.jobs.all())
    return [(job, fooled) for job, fooled in found if fooled is not None and fooled.rarely]
