from django.urls import path

from attacks import dataset_views, lists, views
from attacks.gradient_views import model_gradients

urlpatterns = [
    path("models/new/", views.model_create, name="model-create"),
    path("models/register/", views.model_register, name="model-register"),
    path("models/<int:model_id>/", views.model_detail, name="model-detail"),
    path("models/<int:model_id>/status.json", views.model_status, name="model-status"),
    path("models/<int:model_id>/gradients.png", model_gradients, name="model-gradients"),
    path("models/<int:model_id>/share/", views.model_share, name="model-share"),
    path(
        "models/<int:model_id>/share/<int:collaborator_id>/remove/",
        views.model_unshare,
        name="model-unshare",
    ),
    path("settings/new/", views.setting_create, name="setting-create"),
    path("settings/import/", views.examples_import, name="examples-import"),
    path("settings/<int:setting_id>/", views.setting_detail, name="setting-detail"),
    path("settings/<int:setting_id>/jobs/", views.job_create, name="job-create"),
    path("settings/<int:setting_id>/family/", views.setting_family, name="setting-family"),
    path("settings/<int:setting_id>/share/", views.setting_share, name="setting-share"),
    path(
        "settings/<int:setting_id>/share/<int:collaborator_id>/remove/",
        views.setting_unshare,
        name="setting-unshare",
    ),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/status.json", views.job_status, name="job-status"),
    path("examples/<int:example_id>.png", views.example_image, name="example-image"),
    path("models/", lists.model_list, name="model-list"),
    path("settings/", lists.setting_list, name="setting-list"),
    path("jobs/", lists.job_list, name="job-list"),
]

# Registered datasets (attacks/dataset_views.py).
urlpatterns += [
    path("datasets/", dataset_views.dataset_list, name="dataset-list"),
    path("datasets/import/", dataset_views.dataset_import, name="dataset-import"),
    path("datasets/<int:dataset_id>/", dataset_views.dataset_detail, name="dataset-detail"),
    path(
        "datasets/imports/<int:job_id>/",
        dataset_views.dataset_import_job,
        name="dataset-import-job",
    ),
    path(
        "datasets/imports/<int:job_id>/status.json",
        dataset_views.dataset_import_status,
        name="dataset-import-status",
    ),
]
