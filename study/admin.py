"""The admin's read-only records: payment file downloads and the studies' audit log."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from study import audit
from study.models import AuditEvent, PaymentFileDownload


@admin.register(PaymentFileDownload)
class PaymentFileDownloadAdmin(admin.ModelAdmin):
    list_display = ("downloaded_at", "study", "file", "rows", "downloaded_by")
    list_filter = ("file",)
    readonly_fields = ("study", "file", "rows", "downloaded_by", "downloaded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a record of what happened, written only by a download

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "study", "actor", "action", "summary")
    list_filter = ("action",)
    list_select_related = ("study", "actor")
    search_fields = ("study__title", "actor__username")
    readonly_fields = ("study", "actor", "action", "detail", "created_at")

    @admin.display(description="summary")
    def summary(self, event: AuditEvent) -> str:
        return audit.summary(event.action, event.detail)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written only where the action happens (study.audit.record)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a log that its readers could edit would prove nothing
