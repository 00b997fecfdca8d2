"""The recipe of docs/migrating.md: files stored before DedupStorage get counted references.

Rows that point at files the index never saw (stored by django-ipfs-storage, by
django-cloud-storages or by a plain storage) are untracked: deleting one row deletes the
file for every other row too. Saving each row's file again through the DedupStorage and
deleting the old names afterwards leaves every row on a counted name, one object per
content. ``record_existing_files`` is the recipe exactly as the page prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from dedupstore import DedupStorage
from tests.testapp.models import Document


def record_existing_files(model: Any, field_name: str, storage: Any) -> None:
    """Give every file of ``model.<field_name>`` a counted reference in ``storage``'s index."""
    old_names = set()
    for row in model.objects.exclude(**{field_name: ""}).iterator():
        file = getattr(row, field_name)
        with storage.open(file.name) as content:
            new_name = storage.save(file.name, content, max_length=file.field.max_length)
        if new_name != file.name:
            old_names.add(file.name)
            model.objects.filter(pk=row.pk).update(**{field_name: new_name})
    for name in old_names:
        storage.delete(name)  # untracked: deletes the old object itself


def test_rows_on_files_stored_before_the_wrapper_end_up_counted_and_deduplicated(
    db: None, redis_url: str, tmp_path: Path
) -> None:
    location = tmp_path / "media"
    plain = FileSystemStorage(location=str(location))
    # As an old site left them: three rows on two copies of one content, one on another,
    # and two rows on one name (django-cloud-storages returned the existing name).
    names = [
        plain.save("docs/a.pdf", ContentFile(b"same")),
        plain.save("docs/b.pdf", ContentFile(b"same")),
        plain.save("docs/c.pdf", ContentFile(b"other")),
    ]
    rows = [Document.objects.create(file=name) for name in [*names, names[0]]]
    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
        index=redis_url,
    )
    assert all(storage.references(name) == 0 for name in names)

    record_existing_files(Document, "file", storage)

    files = {row.pk: Document.objects.get(pk=row.pk).file.name for row in rows}
    same = {files[rows[0].pk], files[rows[1].pk], files[rows[3].pk]}
    assert len(same) == 1
    (same_name,) = same
    assert storage.references(same_name) == 3
    assert storage.references(files[rows[2].pk]) == 1
    assert not any(plain.exists(name) for name in names)  # the old names are gone
    stored = {Path(same_name).name, Path(files[rows[2].pk]).name}
    assert sorted(plain.listdir("docs")[1]) == sorted(stored)  # one file per content
    # Deleting rows now drops references: the shared object goes with the last one.
    for row in rows[:2]:
        storage.delete(Document.objects.get(pk=row.pk).file.name)
    assert storage.exists(same_name) and storage.references(same_name) == 1
    storage.delete(same_name)
    assert not storage.exists(same_name)
    assert storage.open(files[rows[2].pk]).read() == b"other"
