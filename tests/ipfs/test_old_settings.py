"""django-ipfs-storage's settings, pasted verbatim, configure both IPFS classes and never stop
Django: gateway multiaddrs become gateway URLs, and the old spellings are read in the order
in which the old package used them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from dedupstore.backends.ipfs import InterPlanetaryFileSystemStorage, IPFSStorage
from dedupstore.backends.ipfs.storage import gateway_base_url

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
ROOT = Path(__file__).resolve().parents[2]

#: The "As default backend" block of django-ipfs-storage's README, verbatim.
OLD_README_SETTINGS = """\
DEFAULT_FILE_STORAGE = 'ipfs_storage.InterPlanetaryFileSystemStorage'

IPFS_STORAGE_API_URL = '/ip4/localhost/tcp/5001'

IPFS_STORAGE_GATEWAY_URL = '/ip4/localhost/tcp/8080'
IPFS_STORAGE_GATEWAY_API_URL = 'http://localhost:8080/ipfs'
"""


def _readme_settings() -> dict[str, str]:
    namespace: dict[str, str] = {}
    exec(OLD_README_SETTINGS, namespace)  # the README's text as Python, nothing else
    found = {key: value for key, value in namespace.items() if key.isupper()}
    if django.VERSION < (5, 1):
        # Django 4.2 still uses (and imports) DEFAULT_FILE_STORAGE: its import path is the
        # one line a site changes (see the Migrating page); the IPFS settings stay verbatim.
        found.pop("DEFAULT_FILE_STORAGE")
    return found


def test_the_old_readme_settings_configure_the_raw_storage() -> None:
    with override_settings(**_readme_settings()):
        storage = IPFSStorage()
        assert storage.url(CID) == f"http://localhost:8080/ipfs/{CID}"
        assert storage.transport.client.base_url == "http://localhost:5001/api/v0"  # type: ignore[union-attr]


def test_the_old_readme_settings_configure_the_reference_counting_class() -> None:
    with override_settings(**_readme_settings()):
        storage = InterPlanetaryFileSystemStorage()
        assert storage.url(CID) == f"http://localhost:8080/ipfs/{CID}"
        inner = storage.inner
        assert isinstance(inner, IPFSStorage)
        assert inner.transport.client.base_url == "http://localhost:5001/api/v0"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("address", "base"),
    [
        ("/ip4/localhost/tcp/8080", "http://localhost:8080/ipfs/"),
        ("/ip4/127.0.0.1/tcp/8080", "http://127.0.0.1:8080/ipfs/"),
        ("/ip4/0.0.0.0/tcp/8080", "http://127.0.0.1:8080/ipfs/"),  # a listen address
        ("/ip6/::1/tcp/8080", "http://[::1]:8080/ipfs/"),
        ("/ip6/::/tcp/8080", "http://[::1]:8080/ipfs/"),
        ("/dns4/gw.example/tcp/443/https", "https://gw.example:443/ipfs/"),
        ("/dns6/gw.example/tcp/8443/https", "https://gw.example:8443/ipfs/"),
        ("/dns/gw.example/tcp/80", "http://gw.example:80/ipfs/"),
        ("https://gw.example/ipfs/", "https://gw.example/ipfs/"),
        ("https://dweb.link", "https://dweb.link"),  # subdomain gateways have no path
    ],
)
def test_a_gateway_multiaddr_becomes_the_gateway_url(address: str, base: str) -> None:
    assert gateway_base_url(address) == base


@pytest.mark.parametrize(
    ("setting", "value", "url"),
    [
        ("IPFS_STORAGE_GATEWAY_URL", "/ip4/localhost/tcp/8080", "http://localhost:8080/ipfs/"),
        ("IPFS_STORAGE_GATEWAY_URL", "https://gw.example/ipfs/", "https://gw.example/ipfs/"),
        # The old url() was f"{IPFS_STORAGE_GATEWAY_API_URL}/ipfs/{cid}".
        ("IPFS_STORAGE_GATEWAY_API_URL", "http://0.0.0.0:8080", "http://0.0.0.0:8080/ipfs/"),
        (
            "IPFS_STORAGE_GATEWAY_API_URL",
            "http://localhost:8080/ipfs",
            "http://localhost:8080/ipfs/",
        ),
        # The README's documented default of IPFS_GATEWAY_API_URL.
        ("IPFS_GATEWAY_API_URL", "/ip4/0.0.0.0/tcp/8080", "http://127.0.0.1:8080/ipfs/"),
        ("IPFS_GATEWAY_API_URL", "http://gw.example:8080", "http://gw.example:8080/ipfs/"),
    ],
)
def test_every_old_gateway_spelling_alone(setting: str, value: str, url: str) -> None:
    with override_settings(**{setting: value}):
        assert IPFSStorage().url(CID) == url + CID
        assert InterPlanetaryFileSystemStorage().url(CID) == url + CID


def test_the_link_base_beats_the_gateway_listen_address() -> None:
    # django-ipfs-storage set IPFS_STORAGE_GATEWAY_URL as the node's gateway listen
    # address and built links from IPFS_STORAGE_GATEWAY_API_URL: behind a proxy only the
    # latter is public.
    with override_settings(
        IPFS_STORAGE_GATEWAY_URL="/ip4/0.0.0.0/tcp/8080",
        IPFS_STORAGE_GATEWAY_API_URL="https://gw.mysite.example",
        IPFS_GATEWAY_API_URL="/ip4/0.0.0.0/tcp/9090",
    ):
        assert IPFSStorage().url(CID) == f"https://gw.mysite.example/ipfs/{CID}"
    with override_settings(
        IPFS_STORAGE_GATEWAY_URL="/ip4/127.0.0.1/tcp/8080",
        IPFS_GATEWAY_API_URL="/ip4/127.0.0.1/tcp/9090",
    ):
        assert IPFSStorage().url(CID) == f"http://127.0.0.1:8080/ipfs/{CID}"
    # A keyword beats every setting.
    with override_settings(IPFS_STORAGE_GATEWAY_API_URL="https://gw.mysite.example"):
        assert (
            IPFSStorage(gateway_url="/ip4/127.0.0.1/tcp/1")
            .url(CID)
            .startswith("http://127.0.0.1:1/ipfs/")
        )


def test_the_old_readme_default_api_address_reaches_the_local_daemon() -> None:
    with override_settings(IPFS_STORAGE_API_URL="/ip4/0.0.0.0/tcp/5001"):
        storage = IPFSStorage()
        assert storage.transport.client.base_url == "http://127.0.0.1:5001/api/v0"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    ["/ip4/localhost/udp/8080", "/ip4/localhost/tcp/0", "/ip4/localhost/tcp/70000", "/ipfs/x"],
)
def test_a_gateway_that_is_neither_url_nor_multiaddr_is_improperly_configured(value: str) -> None:
    with (
        pytest.raises(ImproperlyConfigured, match="IPFS_STORAGE_GATEWAY_URL"),
        override_settings(IPFS_STORAGE_GATEWAY_URL=value),
    ):
        IPFSStorage()
    with pytest.raises(ImproperlyConfigured, match="gateway_url"):
        IPFSStorage(gateway_url=value)


def _fresh_project(tmp_path: Path) -> Path:
    """Make a Django project as a new user would, with the old README's settings and model."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    project = tmp_path / "site"
    project.mkdir()
    for command in (["startproject", "mysite", str(project)], ["startapp", "library"]):
        subprocess.run(
            [sys.executable, "-m", "django", *command],
            cwd=project,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    (project / "library" / "models.py").write_text(
        textwrap.dedent(
            """\
            from django.db import models

            from dedupstore.backends.ipfs import InterPlanetaryFileSystemStorage


            class MyModel(models.Model):
                file_stored_on_ipfs = models.FileField(storage=InterPlanetaryFileSystemStorage())
                other_file = models.FileField()  # will still use DEFAULT_FILE_STORAGE
            """
        )
    )
    settings_py = project / "mysite" / "settings.py"
    settings_py.write_text(
        settings_py.read_text()
        + "\nINSTALLED_APPS += ['dedupstore', 'library']\n\n"
        + OLD_README_SETTINGS
    )
    return project


def test_manage_py_check_passes_with_the_old_readme_settings(tmp_path: Path) -> None:
    project = _fresh_project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for command in (["check"], ["makemigrations", "library", "--dry-run", "-v", "3"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "ImproperlyConfigured" not in done.stderr
        assert "Traceback" not in done.stderr
    # The migration deconstructs the field's storage to its import path, no options.
    assert "storage=dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage()" in done.stdout
