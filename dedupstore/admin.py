"""The admin's read-only pages: one per ``DedupStorage``, with its figures and last verify.

With ``"dedupstore"`` in ``INSTALLED_APPS`` the admin lists every ``DedupStorage`` in use
(under "dedupstore", "Index markers"); each page shows the ``stats`` figures (the index's
counters, one read), a chart of physical against logical bytes (inline SVG), the most
shared objects and the result of the last ``manage.py dedupstore verify`` with its time.
Nothing on them changes anything.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from dedupstore.exceptions import IndexUnavailable
from dedupstore.models import IndexMarker
from dedupstore.storages_in_use import storages_in_use

#: Up to this many objects the page finds the most shared by a scan; above, it shows
#: those of the last verify.
LIVE_SCAN_LIMIT = 50_000


def bytes_chart(physical: int, logical: int) -> SafeString:
    """Return an inline SVG of two bars: the bytes stored and the bytes referenced."""
    width, top = 480, max(physical, logical, 1)
    bars = []
    for row, (label, value, colour) in enumerate(
        (("physical", physical, "#417690"), ("logical", logical, "#79aec8"))
    ):
        length = max(round(width * value / top), 1 if value else 0)
        y = 10 + row * 40
        bars.append(
            format_html(
                '<text x="0" y="{}" font-size="13">{}</text>'
                '<rect x="80" y="{}" width="{}" height="24" fill="{}"></rect>'
                '<text x="{}" y="{}" font-size="13">{} B</text>',
                y + 17,
                label,
                y,
                length,
                colour,
                86 + length,
                y + 17,
                f"{value:,}",
            )
        )
    return format_html(
        '<svg class="dedupstore-chart" role="img" width="{}" height="95" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="physical {} bytes, logical {} bytes">'
        "{}</svg>",
        width + 200,
        physical,
        logical,
        SafeString("".join(bars)),
    )


def storage_summary(number: int, where: str, storage: Any, *, detail: bool) -> dict[str, Any]:
    """Return what the pages show of one storage."""
    from dedupstore.ops.stats import most_shared

    summary: dict[str, Any] = {
        "number": number,
        "where": where,
        "namespace": storage.namespace,
        "index_url": storage.index.display_url,
        "marker": IndexMarker.objects.filter(namespace=storage.namespace).first(),
    }
    try:
        counters = storage.index.stats()
    except IndexUnavailable as exc:
        summary["error"] = str(exc)
        return summary
    summary["stats"] = counters
    summary["saved_bytes"] = counters.logical_bytes - counters.physical_bytes
    summary["ratio"] = (
        counters.logical_bytes / counters.physical_bytes if counters.physical_bytes else 1.0
    )
    if detail:
        summary["chart"] = bytes_chart(counters.physical_bytes, counters.logical_bytes)
        marker = summary["marker"]
        last = marker.last_verify if marker is not None else None
        if counters.objects <= LIVE_SCAN_LIMIT:
            summary["most_shared"] = most_shared(storage, 10)
            summary["most_shared_source"] = "now"
        elif last:
            summary["most_shared"] = last.get("figures", {}).get("most_shared", [])
            summary["most_shared_source"] = "at the last verify"
        if last:
            summary["verify_findings"] = [
                (kind.replace("_", " "), found["count"])
                for kind, found in last.get("findings", {}).items()
            ]
    return summary


@admin.register(IndexMarker)
class IndexMarkerAdmin(admin.ModelAdmin):
    """The storages' pages, in place of a change list; nothing can be added or changed."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        page = path(
            "storage/<int:number>/",
            self.admin_site.admin_view(self.storage_view),
            name="dedupstore_indexmarker_storage",
        )
        return [page, *super().get_urls()]

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return {**self.admin_site.each_context(request), "title": title, "opts": self.opts}

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = self._context(request, "dedupstore storages")
        context["storages"] = [
            {
                **storage_summary(number, where, storage, detail=False),
                "url": reverse(
                    f"{self.admin_site.name}:dedupstore_indexmarker_storage", args=[number]
                ),
            }
            for number, (where, storage) in enumerate(storages_in_use())
        ]
        return TemplateResponse(request, "admin/dedupstore/storages.html", context)

    def storage_view(self, request: HttpRequest, number: int) -> HttpResponse:
        found = list(storages_in_use())
        if number >= len(found):
            raise Http404("no such storage")
        where, storage = found[number]
        context = self._context(request, f"dedupstore: {where}")
        context["storage"] = storage_summary(number, where, storage, detail=True)
        return TemplateResponse(request, "admin/dedupstore/storage.html", context)
