"""The admin's read-only record of payment file downloads."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from study.models import PaymentFileDownload


@admin.register(PaymentFileDownload)
class PaymentFileDownloadAdmin(admin.ModelAdmin):
    list_display = ("downloaded_at", "study", "file", "rows", "downloaded_by")
    list_filter = ("file",)
    readonly_fields = ("study", "file", "rows", "downloaded_by", "downloaded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a record of what happened, written only by a download

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
