"""The study designer: one form in sections, built for one dataset."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet

from attacks.forms import MAX_BIGINT, too_large
from attacks.models import AttackSetting
from attacks.queries import settings_for
from study.design import SettingSample, StudyDesign, class_names
from study.models import Study, StudyCollaborator
from study.planning import MAX_LAB_CODES
from study.queries import settings_with_examples

MAX_COUNT = 100_000
MAIN_SETTINGS = "main settings"  # stands for the per-setting count fields in SECTIONS
CLEAN_ROLES = (  # (field prefix, what the items are called in errors)
    ("control", "controls"),
    ("attention", "attention checks"),
    ("practice", "practice items"),
)

SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Study",
        "What participants read.",
        (
            "title",
            "public_title",
            "expected_minutes",
            "contact",
            "consent_text",
            "withdrawal_policy",
            "instructions",
        ),
    ),
    (
        "Examples under study",
        "How many examples of each attack setting; 0 leaves it out. A setting's first "
        "examples in its seeded source order are taken, so they are a random sample.",
        (MAIN_SETTINGS,),
    ),
    (
        "Clean controls",
        "Clean images, labelled like the examples: the human baseline.",
        ("control_setting", "control_count"),
    ),
    (
        "Attention checks",
        "Gold items: clean images whose expected answer is their class, mixed in with the "
        "examples. Never one whose source image the study shows elsewhere.",
        (
            "attention_setting",
            "attention_count",
            "attention_checks_per_participant",
            "tells_of_known_answers",
        ),
    ),
    (
        "Practice",
        "Shown first, with feedback; never analysed. Every participant gets all of them.",
        ("practice_setting", "practice_count"),
    ),
    (
        "Labelling",
        "Items per participant counts main and control items; attention checks and practice "
        "come on top.",
        ("items_per_participant", "labels_per_item", "classes", "cant_tell", "seed"),
    ),
    (
        "Presentation",
        "Timed: the image shows for the exposure time, then a mask; answers after the "
        "deadline (counted from the image's onset) are not accepted.",
        ("presentation", "exposure_ms", "response_deadline_ms"),
    ),
    (
        "Recruitment",
        "How participants arrive. Excluded studies work both ways, and only for Prolific and "
        "MTurk, whose ids recognise a person.",
        ("recruitment", "lab_code_count", "exclude_participants_of"),
    ),
    (
        "Exclusion rules",
        "A participant is excluded who fails more attention checks than allowed, or answers "
        "faster than the minimum more often than allowed; a researcher may also exclude or "
        "re-include anyone by hand. Their labels are kept but not analysed, and their items "
        "are offered to others.",
        ("max_attention_failures", "min_response_ms", "max_fast_responses", "excluded_outcome"),
    ),
    (
        "Payments",
        "Bonuses, in the recruiter's currency, for completed participants who are not excluded; "
        "the study's page gives Prolific's and MTurk's payment files.",
        ("bonus_per_attention_check", "bonus_per_item"),
    ),
    (
        "Leases",
        "An item handed to a participant returns to the pool if they do not answer in time.",
        ("lease_minutes",),
    ),
)


class SettingChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({getattr(obj, 'available', '?')} examples)"


def _count(
    label: str, help_text: str = "", *, initial: int = 0, required: bool = False
) -> forms.IntegerField:
    """A count; an optional one left empty means 0."""
    return forms.IntegerField(
        min_value=0,
        max_value=MAX_COUNT,
        initial=initial,
        required=required,
        label=label,
        help_text=help_text,
    )


def _clean_setting(help_text: str) -> SettingChoiceField:
    return SettingChoiceField(
        queryset=AttackSetting.objects.none(), required=False, help_text=help_text
    )


def _milliseconds(label: str, help_text: str) -> forms.IntegerField:
    return forms.IntegerField(
        min_value=1, max_value=600_000, required=False, label=label, help_text=help_text
    )


def _money(label: str, help_text: str) -> forms.DecimalField:
    """An amount in the recruiter's currency; left empty, none."""
    return forms.DecimalField(
        min_value=Decimal(0),
        max_value=Decimal(100),
        max_digits=6,
        decimal_places=2,
        initial=Decimal(0),
        required=False,
        label=label,
        help_text=help_text,
    )


class StudyChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.title} (study {obj.pk}, {obj.status})"


def studies_run_by(user: User | AnonymousUser | None) -> QuerySet[Study]:
    """The studies ``user`` owns or may edit: the ones a design of theirs may exclude."""
    if user is None or user.pk is None:
        return Study.objects.none()
    if getattr(user, "is_superuser", False):
        return Study.objects.all()
    edits = Q(collaborators__user_id=user.pk, collaborators__role=StudyCollaborator.Role.EDIT)
    return Study.objects.filter(Q(owner_id=user.pk) | edits).distinct()


def offered_to(researcher: User | AnonymousUser | None, editing: Study | None) -> Q:
    """The settings the researcher may see (attacks.queries); editing a draft, its own too."""
    offered = Q(pk__in=settings_for(researcher).values("pk"))
    if editing is not None:  # a study's editor keeps its settings, whoever owns them
        offered |= Q(pk__in=editing.items.values("example__setting_id"))
    return offered


@dataclass(frozen=True)
class FormSection:
    title: str
    help_text: str
    fields: list[forms.BoundField]


class StudyDesignForm(forms.Form):
    # Which dataset the page was built for; a POST without it means the only one there is.
    dataset = forms.CharField(widget=forms.HiddenInput, required=False)
    title = forms.CharField(
        max_length=200, help_text="For researchers only: participants never see it"
    )
    public_title = forms.CharField(
        max_length=200,
        required=False,
        label="Title participants see",
        help_text="On the consent and labelling pages; left empty, “Image study”. "
        "Name no attack, model or budget here",
    )
    expected_minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        required=False,
        label="Expected duration (minutes)",
        help_text="The consent page says how long taking part takes",
    )
    contact = forms.CharField(
        max_length=300,
        required=False,
        label="Contact",
        help_text="Whom participants may ask about the study, e.g. "
        "“A. Researcher, Some University, a.researcher@example.org”",
    )
    consent_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="Shown before the study; participants agree or decline (screened out).",
    )
    withdrawal_policy = forms.ChoiceField(
        choices=Study.WithdrawalPolicy.choices,
        widget=forms.RadioSelect,
        initial=Study.WithdrawalPolicy.DELETE,
        required=False,  # left out: their answers are deleted
        label="When a participant withdraws",
        help_text="Every annotator page has a \u201cWithdraw\u201d link; the consent page "
        "states this policy",
    )
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        initial="Which class do you see? If it is none of them, or you cannot tell, say so.",
    )
    control_setting = _clean_setting("A clean setting of this dataset")
    control_count = _count("Control count")
    attention_setting = _clean_setting("A clean setting; the expected answer is the image's class")
    attention_count = _count("Attention pool size", "Gold items to draw from")
    attention_checks_per_participant = _count("Attention checks per participant")
    tells_of_known_answers = forms.BooleanField(
        required=False,
        label="Say that some images have known answers",
        help_text="The instructions then say so, without saying which images",
    )
    practice_setting = _clean_setting("A clean setting")
    practice_count = _count("Practice count")
    items_per_participant = forms.IntegerField(min_value=1, max_value=10_000, initial=40)
    labels_per_item = forms.IntegerField(
        min_value=1, max_value=1000, initial=3, label="Labels per item (k)"
    )
    classes = forms.TypedMultipleChoiceField(
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        label="Answers offered",
        help_text="Untick a class to leave it out.",
    )
    cant_tell = forms.BooleanField(
        required=False, initial=True, label="Offer \u201cNone / can't tell\u201d"
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=MAX_BIGINT,
        initial=0,
        label="Randomisation seed",
        help_text="Orders the items",
        error_messages={"max_value": too_large(MAX_BIGINT)},
    )
    presentation = forms.ChoiceField(
        choices=Study.Presentation.choices,
        widget=forms.RadioSelect,
        initial=Study.Presentation.UNLIMITED,
    )
    exposure_ms = _milliseconds("Exposure (ms)", "Timed only: how long the image shows")
    response_deadline_ms = _milliseconds(
        "Response deadline (ms)", "Timed only: from the image's onset"
    )
    recruitment = forms.ChoiceField(
        choices=Study.Recruitment.choices, widget=forms.RadioSelect, initial="open"
    )
    lab_code_count = forms.IntegerField(
        min_value=0,
        max_value=MAX_LAB_CODES,
        initial=20,
        required=False,
        label="Lab codes",
        help_text="Lab only: how many one-time codes to generate",
    )
    exclude_participants_of = StudyChoiceField(
        queryset=Study.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Exclude participants of",
        help_text="No one who entered one of these studies may join this one, nor the reverse.",
    )
    bonus_per_attention_check = _money(
        "Bonus per attention check", "For each attention check answered right"
    )
    bonus_per_item = _money("Bonus per item", "For each example or control labelled")
    max_attention_failures = _count("Attention failures allowed", required=True)
    min_response_ms = _count("Minimum response time (ms)", initial=250, required=True)
    max_fast_responses = _count("Too-fast answers allowed", initial=3, required=True)
    excluded_outcome = forms.ChoiceField(
        choices=Study.ExcludedOutcome.choices,
        widget=forms.RadioSelect,
        initial=Study.ExcludedOutcome.SCREEN_OUT,
        required=False,  # left out: the screen-out code
        label="The end of an excluded participant",
        help_text="For one whose session an exclusion ended; the page never says why",
    )
    lease_minutes = forms.IntegerField(
        min_value=1, max_value=24 * 60, initial=10, label="Lease (minutes)"
    )

    def __init__(
        self,
        dataset: str,
        *args: Any,
        editing: Study | None = None,
        researcher: User | AnonymousUser | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.dataset_name = dataset
        self.editing = editing  # the draft whose design this form replaces, if any
        self.fields["dataset"].initial = dataset
        self._offer_studies_to_exclude(researcher)
        settings = settings_with_examples(dataset).filter(offered_to(researcher, editing))
        settings = settings.order_by("name")
        for prefix, _ in CLEAN_ROLES:
            field = self.fields[f"{prefix}_setting"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = settings.filter(kind=AttackSetting.Kind.CLEAN)
        self.main_settings = list(settings.exclude(kind=AttackSetting.Kind.CLEAN))
        for setting in self.main_settings:
            available = getattr(setting, "available", 0)
            self.fields[count_field(setting)] = _count(
                setting.name, f"{setting.kind}, {setting.attack_name}: {available} examples"
            )
        self._offer_classes(class_names(dataset))

    def _offer_studies_to_exclude(self, researcher: User | AnonymousUser | None) -> None:
        field = self.fields["exclude_participants_of"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        studies = studies_run_by(researcher).order_by("-id")
        field.queryset = studies.exclude(pk=self.editing.pk) if self.editing else studies

    def _offer_classes(self, names: tuple[str, ...]) -> None:
        field = self.fields["classes"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        field.choices = list(enumerate(names))
        field.initial = list(range(len(names)))

    def clean_dataset(self) -> str:
        if self.cleaned_data["dataset"] not in ("", self.dataset_name):
            raise forms.ValidationError("the dataset changed; start the design again")
        return self.dataset_name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for prefix, what in CLEAN_ROLES:
            setting, count = data.get(f"{prefix}_setting"), data.get(f"{prefix}_count")
            if count and not setting:
                self.add_error(f"{prefix}_setting", f"choose the setting to draw {what} from")
            if setting and not count:
                self.add_error(f"{prefix}_count", f"choose how many {what}")
        recognised = (Study.Recruitment.PROLIFIC, Study.Recruitment.MTURK)
        if data.get("exclude_participants_of") and data.get("recruitment") not in recognised:
            self.add_error(
                "exclude_participants_of",
                "only Prolific and MTurk ids recognise a person; choose one of them to exclude "
                "other studies' participants",
            )
        return data

    def sections(self) -> list[FormSection]:
        main = [count_field(setting) for setting in self.main_settings]
        return [
            FormSection(
                title,
                help_text,
                [
                    self[name]
                    for field in names
                    for name in (main if field == MAIN_SETTINGS else [field])
                ],
            )
            for title, help_text, names in SECTIONS
        ]

    def to_design(self) -> StudyDesign:
        data = self.cleaned_data
        return StudyDesign(
            title=data["title"],
            instructions=data["instructions"],
            consent_text=data["consent_text"],
            public_title=data["public_title"],
            expected_minutes=data["expected_minutes"],
            contact=data["contact"],
            withdrawal_policy=data["withdrawal_policy"] or Study.WithdrawalPolicy.DELETE,
            samples=tuple(
                SettingSample(setting, data[count_field(setting)])
                for setting in self.main_settings
                if data.get(count_field(setting))
            ),
            controls=_sample(data, "control"),
            attention=_sample(data, "attention"),
            attention_checks_per_participant=data["attention_checks_per_participant"] or 0,
            tells_of_known_answers=data["tells_of_known_answers"],
            practice=_sample(data, "practice"),
            items_per_participant=data["items_per_participant"],
            labels_per_item=data["labels_per_item"],
            classes=tuple(data["classes"]),
            cant_tell=data["cant_tell"],
            seed=data["seed"],
            presentation=data["presentation"],
            exposure_ms=data["exposure_ms"],
            response_deadline_ms=data["response_deadline_ms"],
            recruitment=data["recruitment"],
            lab_code_count=data["lab_code_count"] or 0,
            max_attention_failures=data["max_attention_failures"],
            min_response_ms=data["min_response_ms"],
            max_fast_responses=data["max_fast_responses"],
            excluded_outcome=data["excluded_outcome"] or Study.ExcludedOutcome.SCREEN_OUT,
            lease_minutes=data["lease_minutes"],
            exclude_participants_of=tuple(
                study.pk for study in data.get("exclude_participants_of") or ()
            ),
            bonus_per_attention_check=data.get("bonus_per_attention_check") or Decimal(0),
            bonus_per_item=data.get("bonus_per_item") or Decimal(0),
        )


def count_field(setting: AttackSetting) -> str:
    return f"count_{setting.pk}"


def _sample(data: dict[str, Any], prefix: str) -> SettingSample | None:
    setting = data.get(f"{prefix}_setting")
    return SettingSample(setting, data[f"{prefix}_count"] or 0) if setting else None


def initial_from_design(design: StudyDesign, *, title: str | None = None) -> dict[str, Any]:
    """The designer's fields filled in from a design (to edit a draft or copy a study)."""
    initial: dict[str, Any] = {
        "title": design.title if title is None else title,
        "instructions": design.instructions,
        "consent_text": design.consent_text,
        "public_title": design.public_title,
        "expected_minutes": design.expected_minutes,
        "contact": design.contact,
        "withdrawal_policy": design.withdrawal_policy,
        "attention_checks_per_participant": design.attention_checks_per_participant,
        "tells_of_known_answers": design.tells_of_known_answers,
        "items_per_participant": design.items_per_participant,
        "labels_per_item": design.labels_per_item,
        "cant_tell": design.cant_tell,
        "seed": design.seed,
        "presentation": design.presentation,
        "exposure_ms": design.exposure_ms,
        "response_deadline_ms": design.response_deadline_ms,
        "recruitment": design.recruitment,
        "lab_code_count": design.lab_code_count or 20,
        "max_attention_failures": design.max_attention_failures,
        "min_response_ms": design.min_response_ms,
        "max_fast_responses": design.max_fast_responses,
        "excluded_outcome": design.excluded_outcome,
        "lease_minutes": design.lease_minutes,
        "exclude_participants_of": list(design.exclude_participants_of),
        "bonus_per_attention_check": design.bonus_per_attention_check,
        "bonus_per_item": design.bonus_per_item,
    }
    if design.classes is not None:
        initial["classes"] = list(design.classes)
    for sample in design.samples:
        initial[count_field(sample.setting)] = sample.count
    for prefix, clean in (
        ("control", design.controls),
        ("attention", design.attention),
        ("practice", design.practice),
    ):
        if clean is not None:
            initial[f"{prefix}_setting"] = clean.setting.pk
            initial[f"{prefix}_count"] = clean.count
    return initial


class LabCodesForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=MAX_LAB_CODES, initial=10)


class CollaboratorForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="A researcher's user name")
    role = forms.ChoiceField(choices=StudyCollaborator.Role.choices, initial="view")


class ExclusionForm(forms.Form):
    """A researcher's exclusion or re-inclusion of one participant, with the reason for it."""

    EXCLUDE, INCLUDE = "exclude", "include"

    action = forms.ChoiceField(
        choices=[(EXCLUDE, "Exclude"), (INCLUDE, "Re-include")], widget=forms.HiddenInput
    )
    reason = forms.CharField(
        max_length=500,
        help_text=(
            "Recorded with your name and the time. The payment files carry it: MTurk shows "
            "it to a rejected worker."
        ),
    )
