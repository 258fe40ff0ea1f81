"""Permission-checked getters for studies."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404

from study.models import Study


def owned_study(user: User | AnonymousUser, study_id: int) -> Study:
    """The study if ``user`` owns it (or is a superuser); 404 otherwise, so ids do not leak."""
    study = Study.objects.filter(pk=study_id).first()
    if study is None or not (study.owner_id == user.pk or getattr(user, "is_superuser", False)):
        raise Http404("no such study")
    return study
