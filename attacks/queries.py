"""Who may see or change models, attack settings, jobs and examples: permission-checked reads.

A model or setting belongs to its ``created_by``. Its owner shares it with researchers or
with lab groups (Django auth groups), to view or to edit, as a study is shared. A row
with no owner (the zoo, command-line imports, rows made before rows had owners) is
public: every researcher views it, only superusers change it. Jobs and examples go with
their setting. Superusers own everything. Anyone short of the access asked for gets 404,
as ``study.queries.study_for`` answers, so that ids do not leak.

Whether the user is a researcher at all is the caller's door to check
(``config.auth.researcher_required``, the API's permission class), not this module's.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, TypeVar

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Collaborator,
    DatasetImportJob,
    Example,
    GenerationJob,
    ModelCollaborator,
    SettingCollaborator,
    SharingRole,
)

Researcher = User | AnonymousUser | None
Row = TypeVar("Row", bound=Model)


class Access(IntEnum):
    """What a researcher may do with a model or setting; each level includes those below it."""

    VIEW = 1  # read it; for a setting, its jobs and examples as well
    EDIT = 2  # a setting: also start, cancel and retry its jobs, and name its family
    OWN = 3  # also share it: add and remove collaborators

    @property
    def label(self) -> str:
        return self.name.lower()


ACCESS_OF_ROLE: dict[str, Access] = {SharingRole.VIEW: Access.VIEW, SharingRole.EDIT: Access.EDIT}


def _is_superuser(user: Researcher) -> bool:
    return bool(getattr(user, "is_superuser", False))


# Rows without an owner (the zoo, command-line imports, rows from before owners).
_PUBLIC = Q(created_by__isnull=True)


def _held_by(user: User | AnonymousUser) -> Q:
    """Collaborator rows that give ``user`` a role: theirs, or one of their groups'."""
    return Q(user_id=user.pk) | Q(group__user=user.pk)


def _access(
    owner_id: int | None, shares: QuerySet[Collaborator], user: Researcher
) -> Access | None:
    if _is_superuser(user) or (user is not None and owner_id is not None and owner_id == user.pk):
        return Access.OWN
    if user is None or user.pk is None:
        return None
    roles = shares.filter(_held_by(user)).values_list("role", flat=True)
    found = [ACCESS_OF_ROLE[role] for role in roles]
    if owner_id is None:
        found.append(Access.VIEW)
    return max(found, default=None)


def model_access(model: ClassifierModel, user: Researcher) -> Access | None:
    """The user's access to ``model``: owners and superusers own it, collaborators have a role."""
    return _access(model.created_by_id, model.collaborators.all(), user)


def setting_access(setting: AttackSetting, user: Researcher) -> Access | None:
    """The user's access to ``setting`` (and so to its jobs and examples)."""
    return _access(setting.created_by_id, setting.collaborators.all(), user)


def _reachable(shares: type[Collaborator], field: str, user: Researcher, need: Access) -> Q:
    """Rows ``user`` has at least ``need`` on, as a filter of their own table."""
    if user is None or user.pk is None:
        return Q(pk__in=[])
    roles = [role for role, access in ACCESS_OF_ROLE.items() if access >= need]
    shared = shares._default_manager.filter(_held_by(user), role__in=roles).values(field)
    mine = Q(created_by_id=user.pk) | Q(pk__in=shared)
    return mine | _PUBLIC if need == Access.VIEW else mine


def models_for(user: Researcher, need: Access = Access.VIEW) -> QuerySet[ClassifierModel]:
    """Models the user has at least ``need`` on (every one, for a superuser)."""
    if _is_superuser(user):
        return ClassifierModel.objects.all()
    return ClassifierModel.objects.filter(_reachable(ModelCollaborator, "model_id", user, need))


def models_seen_by_maker(maker: User | None) -> QuerySet[ClassifierModel]:
    """Models a setting's maker may see; a setting made by no one (a command's) sees the
    public ones only. Only these predict on the setting's examples, so that no prediction
    carries a model to researchers its owner did not share it with."""
    return models_for(maker) if maker is not None else ClassifierModel.objects.filter(_PUBLIC)


def settings_for(user: Researcher, need: Access = Access.VIEW) -> QuerySet[AttackSetting]:
    """Settings the user has at least ``need`` on (every one, for a superuser)."""
    if _is_superuser(user):
        return AttackSetting.objects.all()
    return AttackSetting.objects.filter(_reachable(SettingCollaborator, "setting_id", user, need))


def jobs_for(user: Researcher) -> QuerySet[GenerationJob]:
    """The jobs of the settings the user may see."""
    if _is_superuser(user):
        return GenerationJob.objects.all()
    return GenerationJob.objects.filter(setting__in=settings_for(user))


def _checked(found: Row | None, access: Access | None, need: Access, what: str) -> Row:
    if found is None or access is None or access < need:
        raise Http404(f"no such {what}")
    return found


def model_for(user: Researcher, model_id: int, need: Access = Access.VIEW) -> ClassifierModel:
    """The model if ``user`` has at least ``need`` on it; 404 otherwise."""
    model = ClassifierModel.objects.filter(pk=model_id).first()
    access = model_access(model, user) if model is not None else None
    return _checked(model, access, need, "model")


def setting_for(user: Researcher, setting_id: int, need: Access = Access.VIEW) -> AttackSetting:
    """The setting if ``user`` has at least ``need`` on it; 404 otherwise."""
    setting = AttackSetting.objects.filter(pk=setting_id).select_related("target_model").first()
    access = setting_access(setting, user) if setting is not None else None
    return _checked(setting, access, need, "attack setting")


def job_for(user: Researcher, job_id: int, need: Access = Access.VIEW) -> GenerationJob:
    """The job if ``user`` has at least ``need`` on its setting; 404 otherwise."""
    job = GenerationJob.objects.filter(pk=job_id).select_related("setting").first()
    access = setting_access(job.setting, user) if job is not None else None
    return _checked(job, access, need, "job")


def example_for(user: Researcher, example_id: int) -> Example:
    """The example if ``user`` may see its setting; 404 otherwise.

    A study's readers reach the images of its items through the study's own image URL
    (analysis), whoever owns the settings they come from.
    """
    example = Example.objects.filter(pk=example_id).select_related("setting").first()
    access = setting_access(example.setting, user) if example is not None else None
    return _checked(example, access, Access.VIEW, "example")


def config_for(user: Researcher, setting: AttackSetting) -> dict[str, Any]:
    """The setting's config as ``user`` may read it: an import report names only the models
    and settings ``user`` may see (a viewer of the setting need not see all that its maker
    sees). A copy: the stored config is left as it is."""
    config = dict(setting.config)
    report = config.get("import_report")
    if not isinstance(report, dict):
        return config
    report = dict(report)
    if "predictions" in report:
        named = [item["model_id"] for item in report["predictions"]]
        seen = set(models_for(user).filter(pk__in=named).values_list("pk", flat=True))
        report["predictions"] = [item for item in report["predictions"] if item["model_id"] in seen]
    if "same_file_as" in report:  # setting names are unique
        shown = settings_for(user).filter(name__in=report["same_file_as"])
        names = set(shown.values_list("name", flat=True))
        report["same_file_as"] = [name for name in report["same_file_as"] if name in names]
    config["import_report"] = report
    return config


def import_job_for(user: Researcher, job_id: int) -> DatasetImportJob:
    """The dataset import job if ``user`` queued it (or is a superuser); 404 otherwise."""
    job = DatasetImportJob.objects.filter(pk=job_id).select_related("result").first()
    mine = job is not None and user is not None and job.created_by_id == user.pk
    if job is None or not (mine or _is_superuser(user)):
        raise Http404("No such dataset import.")
    return job
