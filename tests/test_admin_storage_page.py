"""The admin's read-only page per DedupStorage: figures, a chart, most shared, last verify."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from dedupstore import DedupStorage
from dedupstore.testing.browser import chromium_available, headless_chromium
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.fixture
def ops() -> DedupStorage:
    storage = empty_ops_storage()
    shared = storage.save("clips/shared.bin", ContentFile(b"s" * 300))
    for _ in range(2):
        Clip.objects.create(video=storage.save("clips/again.bin", ContentFile(b"s" * 300)))
    Clip.objects.create(video=shared)
    Clip.objects.create(video=storage.save("clips/one.bin", ContentFile(b"o" * 100)))
    assert dedupstore("verify", "--storage", "ops").status == 0
    return storage


def ops_page(client: Client) -> str:
    listing = client.get("/admin/dedupstore/indexmarker/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "STORAGES[&#x27;ops&#x27;]" in page
    start = page.index("STORAGES[&#x27;ops&#x27;]")
    href = page[:start].rsplit('href="', 1)[1].split('"', 1)[0]
    return href


def test_the_storage_page_shows_figures_chart_most_shared_and_the_last_verify(
    ops: DedupStorage,
) -> None:
    User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests")
    client = Client()
    client.login(username="admin", password="pw-for-tests")
    response = client.get(ops_page(client))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<th>objects</th><td>2</td>" in page
    assert "<th>logical bytes</th><td>1000</td>" in page  # 3 x 300 + 100
    assert "<svg" in page and 'aria-label="physical 400 bytes, logical 1000 bytes"' in page
    assert "<td>clips/shared.bin</td><td>3</td>" in page
    assert "<strong>ok</strong>" in page
    # Read-only: nothing can be added or deleted.
    assert client.get("/admin/dedupstore/indexmarker/add/").status_code == 403


def test_staff_without_the_view_permission_cannot_see_the_pages(ops: DedupStorage) -> None:
    User.objects.create_user("staff", password="pw-for-tests", is_staff=True)
    client = Client()
    client.login(username="staff", password="pw-for-tests")
    assert client.get("/admin/dedupstore/indexmarker/").status_code == 403
    assert client.get("/admin/dedupstore/indexmarker/storage/0/").status_code == 403


@pytest.mark.slow
@pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium and chromium-driver")
def test_the_storage_page_in_headless_chromium(
    ops: DedupStorage, live_server: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests")
    with headless_chromium() as driver:
        driver.get(f"{live_server.url}/admin/login/")
        driver.find_element(By.NAME, "username").send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys("pw-for-tests")
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        # click() does not wait for the next page; a long deadline for a busy machine.
        WebDriverWait(driver, 120).until(lambda d: "/admin/login/" not in d.current_url)
        driver.get(f"{live_server.url}/admin/dedupstore/indexmarker/")
        driver.find_element(By.LINK_TEXT, "STORAGES['ops']").click()
        stats = driver.find_element(By.ID, "dedupstore-stats").text
        assert "objects 2" in stats and "dedup ratio 2.50" in stats
        chart = driver.find_element(By.CSS_SELECTOR, "svg.dedupstore-chart")
        bars = chart.find_elements(By.TAG_NAME, "rect")
        widths = [float(bar.get_attribute("width")) for bar in bars]
        assert widths[0] < widths[1]  # physical below logical
        shared = driver.find_element(By.ID, "dedupstore-most-shared").text
        assert "clips/shared.bin 3 300" in shared
        assert "ok" in driver.find_element(By.ID, "dedupstore-last-verify").text
        screenshot = Path(os.environ.get("DEDUPSTORE_SCREENSHOTS", tmp_path)) / "storage-page.png"
        driver.save_screenshot(str(screenshot))
        print(f"screenshot of the admin's storage page: {screenshot}")
        assert screenshot.stat().st_size > 0
