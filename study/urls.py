from django.urls import path

from study import lists, views

urlpatterns = [
    path("", views.researcher_home, name="researcher-home"),
    path("studies/", lists.study_list, name="study-list"),
    path("studies/new/", views.study_create, name="study-create"),
    path("studies/<int:study_id>/", views.study_detail, name="study-detail"),
    path("studies/<int:study_id>/edit/", views.study_edit, name="study-edit"),
    path("studies/<int:study_id>/status/", views.study_status, name="study-status"),
    path("studies/<int:study_id>/lab-codes/", views.lab_codes_add, name="lab-codes-add"),
    path("studies/<int:study_id>/lab-codes.txt", views.lab_codes_text, name="lab-codes-text"),
    path(
        "studies/<int:study_id>/payments/<str:file_name>",
        views.payment_file,
        name="study-payment-file",
    ),
    path("studies/<int:study_id>/audit.csv", views.audit_log_csv, name="study-audit-csv"),
    path(
        "studies/<int:study_id>/collaborators/",
        views.collaborator_add,
        name="collaborator-add",
    ),
    path(
        "studies/<int:study_id>/collaborators/<int:user_id>/remove/",
        views.collaborator_remove,
        name="collaborator-remove",
    ),
]
