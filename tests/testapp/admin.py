"""The admin of the test app: uploads through a real browser."""

from __future__ import annotations

from django.contrib import admin

from tests.testapp.models import Poster

admin.site.register(Poster)
