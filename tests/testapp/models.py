"""Models that store files through DedupStorage in every way Django allows."""

from __future__ import annotations

from django.core.files.storage import Storage, storages
from django.db import models
from django_cleanup import cleanup

from dedupstore import DedupStorage


def dedup_storage() -> Storage:
    """Pick the storage at run time (a callable storage is deconstructed by reference)."""
    return storages["dedup"]


class Document(models.Model):
    """Uses the default storage (STORAGES["default"])."""

    file = models.FileField(upload_to="docs/")


class Picture(models.Model):
    image = models.ImageField(upload_to="pictures/", storage=dedup_storage)


class Attachment(models.Model):
    """A per-field storage instance, as a developer would write it in models.py."""

    file = models.FileField(
        upload_to="attachments/",
        max_length=60,
        storage=DedupStorage(inner="plain", index="locmem://attachments", reuse="content"),
    )


def live_storage() -> Storage:
    """The storage whose live set the live-set and database-guard tests read."""
    return storages["live"]


@cleanup.select
class Album(models.Model):
    """Two fields on one storage: one file may be held by several fields and rows."""

    cover = models.FileField(upload_to="albums/", storage=live_storage, blank=True)
    back = models.FileField(upload_to="albums/", storage=live_storage, blank=True)


@cleanup.select
class Track(models.Model):
    """Another model on the same storage."""

    audio = models.FileField(upload_to="tracks/", storage=live_storage, blank=True)


class Poster(models.Model):
    """An image uploaded through the admin, on the default storage."""

    image = models.ImageField(upload_to="uploads/")


def ops_storage() -> Storage:
    """The storage of the manage.py dedupstore tests (its own location and Redis)."""
    return storages["ops"]


class Reel(models.Model):
    """Two fields on the ops storage; ``poster`` is short and has no database index."""

    film = models.FileField(upload_to="reels/", storage=ops_storage, blank=True, db_index=True)
    poster = models.FileField(upload_to="reels/", storage=ops_storage, blank=True, max_length=40)


class Clip(models.Model):
    """Another model on the ops storage."""

    video = models.FileField(upload_to="clips/", storage=ops_storage, blank=True, db_index=True)
