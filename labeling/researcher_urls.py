"""The researcher's pages that labelling serves, mounted under /researcher/ with study's."""

from django.urls import path

from labeling import researcher

urlpatterns = [
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/",
        researcher.participant_page,
        name="participant",
    ),
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/delete/",
        researcher.participant_delete,
        name="participant-delete",
    ),
]
