from django.db import migrations, models

import tests.testapp.models


class Migration(migrations.Migration):
    dependencies = [("testapp", "0003_poster")]

    operations = [
        migrations.CreateModel(
            name="Clip",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "video",
                    models.FileField(
                        blank=True,
                        db_index=True,
                        storage=tests.testapp.models.ops_storage,
                        upload_to="clips/",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Reel",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "film",
                    models.FileField(
                        blank=True,
                        db_index=True,
                        storage=tests.testapp.models.ops_storage,
                        upload_to="reels/",
                    ),
                ),
                (
                    "poster",
                    models.FileField(
                        blank=True,
                        max_length=40,
                        storage=tests.testapp.models.ops_storage,
                        upload_to="reels/",
                    ),
                ),
            ],
        ),
    ]
