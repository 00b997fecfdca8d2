from __future__ import annotations

from django.contrib import admin
from django.urls import path

from tests.testapp.views import upload

urlpatterns = [path("upload/", upload), path("admin/", admin.site.urls)]
