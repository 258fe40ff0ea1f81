"""Sharing a model or an attack setting with a researcher or a lab group, and unsharing it.

Who may then do what is read by ``attacks.queries``; a setting's jobs and examples go
with it. Only the owner (or a superuser) shares, as with studies.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from attacks.models import AttackSetting, ClassifierModel, Collaborator, SharingRole
from attacks.queries import Access, model_access, setting_access

logger = logging.getLogger(__name__)

Shared = AttackSetting | ClassifierModel


def _locked_for_sharing(item: Shared, by: User) -> Shared:
    """The row, locked so that two owners' changes to its sharing queue up; only its owner's."""
    locked = type(item).objects.select_for_update().get(pk=item.pk)
    access = (
        setting_access(locked, by)
        if isinstance(locked, AttackSetting)
        else model_access(locked, by)
    )
    if access != Access.OWN:
        raise PermissionDenied("only its owner may share it")
    return locked


@transaction.atomic
def share(
    item: Shared, *, role: str, by: User, username: str = "", group: str = ""
) -> Collaborator:
    """Share ``item`` with researcher ``username`` or group ``group``, or change their role."""
    locked = _locked_for_sharing(item, by)
    if role not in SharingRole.values:
        raise ValidationError(f"A role is one of {', '.join(SharingRole.values)}.")
    if bool(username) == bool(group):
        raise ValidationError("Share with a researcher or with a group: name one of the two.")
    if username:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None or not user.is_staff:
            # Annotators never have accounts; a staff account is what makes a researcher.
            raise ValidationError(f"No researcher is called {username!r}.")
        if user.pk == locked.created_by_id:
            raise ValidationError("The owner already has every right to it.")
        row, _ = locked.collaborators.update_or_create(user=user, defaults={"role": role})
    else:
        found = Group.objects.filter(name=group).first()
        if found is None:
            raise ValidationError(f"No group is called {group!r}.")
        row, _ = locked.collaborators.update_or_create(group=found, defaults={"role": role})
    logger.info("%s shared with %s (%s) by user %s", locked, row.holder, role, by.pk)
    return row


@transaction.atomic
def unshare(item: Shared, collaborator_id: int, *, by: User) -> bool:
    """Stop sharing ``item`` with one researcher or group; False if that share was not there."""
    locked = _locked_for_sharing(item, by)
    deleted, _ = locked.collaborators.filter(pk=collaborator_id).delete()
    if deleted:
        logger.info("%s unshared (share %s) by user %s", locked, collaborator_id, by.pk)
    return bool(deleted)
