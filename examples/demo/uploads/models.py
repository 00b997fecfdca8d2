from __future__ import annotations

from django.db import models


class Upload(models.Model):
    """One user upload; many of them share content."""

    title = models.CharField(max_length=100)
    file = models.FileField(upload_to="uploads/")
