"""The form that registers a model from a file, shared by the page and the REST API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from attacks.dataset_registry import offer_datasets
from attacks.datasets import dataset_title
from attacks.engine.datasets import DATASET_NAMES
from attacks.engine.model_files import ModelFileError, parse_normalization
from attacks.queries import Researcher
from config.form_pages import oversized_upload

FILE_HELP = (
    "a torch.export program (.pt2, from torch.export.save with a dynamic batch dimension), "
    "a TorchScript file (torch.jit.save), or a safetensors state dict "
    "(safetensors.torch.save_file) with its architecture below; pickled files "
    "(torch.save) are refused"
)
ARCHITECTURE_HELP = (
    "safetensors only: an advstudy architecture (small_cnn, madry_cnn, resnet18_cifar), a "
    "torchvision model name (resnet18) or a timm model name (resnet10t), built untrained "
    "with the dataset's channels and classes"
)
NORMALIZE_HELP = (
    "MEAN,STD applied inside the model, e.g. 0.1307,0.3081, or per channel "
    "0.485/0.456/0.406,0.229/0.224/0.225; blank: the model takes [0, 1] images as they are"
)


class RegisterModelForm(forms.Form):
    file = forms.FileField(help_text=FILE_HELP)
    name = forms.CharField(max_length=100)
    dataset = forms.ChoiceField(
        choices=[(name, dataset_title(name)) for name in DATASET_NAMES],
        help_text="the images it classifies: shapes and accuracy are checked on its test split",
    )
    architecture = forms.CharField(max_length=50, required=False, help_text=ARCHITECTURE_HELP)
    normalize = forms.CharField(max_length=200, required=False, help_text=NORMALIZE_HELP)

    def __init__(self, *args: Any, researcher: Researcher = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        offer_datasets(self, researcher)

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = settings.ADVSTUDY_MAX_MODEL_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"Model files of at most {limit:,} bytes are registered here; this one has "
                f"{upload.size:,} (an administrator sets the limit)."
            )
        return upload

    def clean_normalize(self) -> str:
        text = self.cleaned_data.get("normalize") or ""
        try:
            parse_normalization(text)
        except ModelFileError as error:
            raise forms.ValidationError(str(error)) from error
        return text.strip()


# Room for a multipart request's other fields and boundaries besides the file.
def oversized_body(content_length: str | None) -> str | None:
    """Why a model upload declared this long is refused before its body is read."""
    return oversized_upload(content_length, settings.ADVSTUDY_MAX_MODEL_BYTES, "Model files")


def registration_arguments(data: dict[str, Any]) -> dict[str, Any]:
    """``registration.register_model``'s arguments (but the file) from the cleaned data."""
    return {
        "name": data["name"],
        "dataset": data["dataset"],
        "architecture": data["architecture"].strip(),
        "normalization": data["normalize"],
    }
