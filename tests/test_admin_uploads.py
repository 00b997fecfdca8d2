"""Uploads through the Django admin in headless Chromium, over AppWriteStorage (loopback only).

A site written to django-cloud-storages' docs (``CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT =
False``) uploads the same image twice through the admin: the second upload reuses the
stored file, and the "Currently:" link of the change form opens the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from PIL import Image

from dedupstore.testing.appwrite import AppwriteTestServer
from dedupstore.testing.browser import chromium_available, headless_chromium
from tests.testapp.models import Poster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not chromium_available(), reason="needs Debian's chromium and chromium-driver"
    ),
]


@pytest.fixture
def appwrite_site(settings: Any, redis_url: str) -> Iterator[AppwriteTestServer]:
    """Configure the site as django-cloud-storages' docs say, against the test server."""
    with AppwriteTestServer() as server:
        settings.APPWRITE_API_KEY = server.api_key
        settings.APPWRITE_PROJECT_ID = server.project_id
        settings.APPWRITE_BUCKET_ID = "default"
        settings.APPWRITE_API_ENDPOINT = server.endpoint
        settings.CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT = False
        settings.DEDUPSTORE_INDEX = redis_url
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": "dedupstore.backends.appwrite.AppWriteStorage"},
        }
        yield server


def _png(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 40, 90)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _log_in(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests")
    driver.get(f"{base}/admin/login/")
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys("pw-for-tests")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    _wait_until_left(driver, "/admin/login/")


def _wait_until_left(driver: Any, path: str) -> None:
    """Wait until the browser has navigated away from ``path`` (click() does not wait)."""
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, 120).until(lambda d: path not in d.current_url)


def _upload(driver: Any, base: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/admin/testapp/poster/add/")
    driver.find_element(By.NAME, "image").send_keys(str(path))
    from selenium.webdriver.support.wait import WebDriverWait

    driver.find_element(By.NAME, "_save").click()
    # click() does not wait for the next page: wait for the change list (a long deadline,
    # for a busy machine), not the add form that may still be showing.
    WebDriverWait(driver, 120).until(
        lambda d: (
            d.current_url.rstrip("/").endswith("/admin/testapp/poster")
            or "errornote" in d.page_source
        )
    )
    assert "was added successfully" in driver.page_source, driver.page_source[-2000:]


def test_a_duplicate_admin_upload_reuses_the_stored_file_and_its_link_opens(
    appwrite_site: AppwriteTestServer, live_server: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    picture = tmp_path / "logo.png"
    content = _png(picture)
    with headless_chromium() as driver:
        _log_in(driver, live_server.url)
        _upload(driver, live_server.url, picture)
        uploads_after_first = appwrite_site.request_count
        _upload(driver, live_server.url, picture)
        first, second = Poster.objects.order_by("pk")
        assert first.image.name == second.image.name == "uploads/logo.png"
        # The duplicate uploaded nothing: no file was created on the server.
        creates = [r for r in appwrite_site.requests[uploads_after_first:] if r.method == "POST"]
        assert creates == []

        driver.get(f"{live_server.url}/admin/testapp/poster/{second.pk}/change/")
        link = driver.find_element(By.CSS_SELECTOR, "p.file-upload a")
        href = link.get_attribute("href")
        assert href.startswith(appwrite_site.endpoint)
        link.click()
        screenshot = Path(os.environ.get("DEDUPSTORE_SCREENSHOTS", tmp_path)) / "currently.png"
        driver.save_screenshot(str(screenshot))
        print(f"screenshot of the opened 'Currently:' link: {screenshot}")
        # The browser shows the image (Chromium renders a lone image in an <img>), not
        # Appwrite's 401 JSON.
        assert driver.find_elements(By.TAG_NAME, "img"), driver.page_source[:500]
        assert requests.get(href, timeout=10).content == content
