"""/api/apps over HTTP: install the test web app, list it, serve it, remove it; refuse bad zips and non-admins."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from herald import cli
from tests.conftest import LiveServer, make_settings, serve
from tests.support.browser import zip_directory
from tests.support.web import WEBAPP, fresh, web_server

MAX_APP_BYTES = 256 * 1024  # this module's HERALD_MAX_APP_BYTES
PREFIX = "/dhis-web-herald-test"


@pytest.fixture(scope="module")
def web(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald with its own apps folder and a small app size limit."""
    yield from web_server(pg_url, pg_engine, tmp_path_factory, HERALD_MAX_APP_BYTES=MAX_APP_BYTES)


@pytest.fixture
def site(web: LiveServer) -> Iterator[LiveServer]:
    """The module's server with fresh demo data and no apps installed."""
    yield from fresh(web)


def zip_of(files: dict[str, bytes]) -> bytes:
    """A zip holding these files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def notes_app() -> bytes:
    """A non-core app: served under /api/apps/notes/."""
    manifest = {"name": "Notes", "short_name": "notes", "version": "2.0.0", "core_app": False, "icons": {"48": "icon.png"}}
    index = b'<!doctype html><meta name="dhis2-base-url" content="__DHIS2_BASE_URL__"><title>Notes</title>'
    return zip_of({"manifest.webapp": json.dumps(manifest).encode(), "index.html": index, "data/config.json": b"{}"})


def upload(client: httpx.Client, data: bytes, name: str = "app.zip") -> httpx.Response:
    """POST /api/apps with the zip in the multipart field `file`."""
    return client.post("/api/apps", files={"file": (name, data, "application/zip")})


def install_test_app(server: LiveServer) -> None:
    """Install tests/webapp as admin."""
    response = upload(server.client("admin"), zip_directory(WEBAPP), "herald-test-1.0.0.zip")
    assert response.status_code == 204, response.text


def assert_web_message(response: httpx.Response, status: int, text: str) -> None:
    """A DHIS2 WebMessage error with this status whose message contains `text`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["httpStatusCode"] == status and body["status"] == "ERROR"
    assert text in body["message"], body["message"]


# ---------------------------------------------------------------- install, list, serve, delete


def test_an_admin_installs_the_test_app_and_it_is_listed_as_a_core_app(site: LiveServer) -> None:
    install_test_app(site)

    listed = site.client("admin").get("/api/apps")

    assert listed.status_code == 200
    (app,) = listed.json()
    assert app["key"] == "herald-test" and app["name"] == "Herald test inbox" and app["version"] == "1.0.0"
    assert app["coreApp"] is True and app["appType"] == "APP"
    assert app["launchUrl"] == f"{site.url}{PREFIX}/"
    assert (site.settings.apps_dir / "herald-test" / "manifest.webapp").is_file()


def test_the_app_folder_redirects_to_its_slash_and_serves_index_html_with_the_base_url_filled_in(
    site: LiveServer,
) -> None:
    install_test_app(site)
    anonymous = site.client(None)

    redirect = anonymous.get(PREFIX)
    page = anonymous.get(f"{PREFIX}/")

    assert redirect.status_code == 301 and redirect.headers["location"] == f"{PREFIX}/"
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert f'<meta name="dhis2-base-url" content="{site.url}">' in page.text
    assert "__DHIS2_BASE_URL__" not in page.text
    assert anonymous.get(f"{PREFIX}/index.html").text == page.text


@pytest.mark.parametrize(
    ("path", "content_type", "cache_control"),
    [
        ("assets/app-1a2b3c4d5e.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        ("assets/app-9f8e7d6c5b.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"),
        ("manifest.webapp", "application/json", "no-cache"),
    ],
)
def test_app_files_are_public_with_their_mime_type_and_cache_headers(
    site: LiveServer, path: str, content_type: str, cache_control: str
) -> None:
    install_test_app(site)

    response = site.client(None).get(f"{PREFIX}/{path}")

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == cache_control
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (WEBAPP / path).read_bytes()


def test_head_requests_get_the_headers_without_the_body(site: LiveServer) -> None:
    install_test_app(site)
    anonymous = site.client(None)

    page = anonymous.head(f"{PREFIX}/")
    script = anonymous.head(f"{PREFIX}/assets/app-1a2b3c4d5e.js")

    assert (page.status_code, page.headers["content-type"], page.content) == (200, "text/html; charset=utf-8", b"")
    assert (script.status_code, script.content) == (200, b"")
    assert script.headers["content-length"] == str((WEBAPP / "assets/app-1a2b3c4d5e.js").stat().st_size)


def test_a_missing_file_or_app_is_a_404_and_paths_cannot_climb_out(site: LiveServer) -> None:
    install_test_app(site)
    anonymous = site.client(None)

    assert anonymous.get(f"{PREFIX}/assets/nothing.js").status_code == 404
    assert anonymous.get("/dhis-web-unknown/").status_code == 404
    assert anonymous.get("/dhis-web-unknown").status_code == 404
    assert anonymous.get(f"{PREFIX}/%2e%2e/%2e%2e/etc/passwd").status_code == 404


def test_the_base_url_comes_from_herald_base_url_so_the_app_works_behind_a_path(
    site: LiveServer, pg_engine: Engine
) -> None:
    install_test_app(site)
    behind_a_proxy = make_settings(
        DATABASE_URL=site.settings.database_url,
        HERALD_APPS_DIR=site.settings.apps_dir,
        HERALD_BASE_URL="https://health.example.org/herald",
    )
    with serve(behind_a_proxy, pg_engine) as other:
        page = other.client(None).get(f"{PREFIX}/")
        other.close_clients()

    assert '<meta name="dhis2-base-url" content="https://health.example.org/herald">' in page.text


def test_a_non_core_app_is_served_under_api_apps_with_an_absolute_base_url(site: LiveServer) -> None:
    assert upload(site.client("admin"), notes_app()).status_code == 204
    anonymous = site.client(None)

    page = anonymous.get("/api/apps/notes/")

    assert anonymous.get("/api/apps/notes").headers["location"] == "/api/apps/notes/"
    assert page.status_code == 200 and f'content="{site.url}"' in page.text
    config = anonymous.get("/api/apps/notes/data/config.json")  # ".json" is a file name here, not a format
    assert config.status_code == 200 and config.headers["content-type"] == "application/json"
    assert anonymous.get("/dhis-web-notes/").status_code == 404


def test_the_app_list_and_menu_need_a_login_but_the_app_files_do_not(site: LiveServer) -> None:
    install_test_app(site)
    anonymous = site.client(None)

    assert anonymous.get("/api/apps").status_code == 401
    assert anonymous.get("/dhis-web-commons/menu/getModules.action").status_code == 401
    assert anonymous.get(f"{PREFIX}/").status_code == 200


def test_the_menu_lists_the_installed_app_for_those_allowed_to_open_it(site: LiveServer) -> None:
    install_test_app(site)

    modules = site.client("admin").get("/dhis-web-commons/menu/getModules.action").json()["modules"]
    for_mobile = site.client("mobile").get("/api/apps/menu").json()["modules"]

    assert modules == [
        {
            "name": "dhis-web-herald-test",
            "namespace": f"{site.url}{PREFIX}",
            "defaultAction": f"{site.url}{PREFIX}/",
            "displayName": "Herald test inbox",
            "description": "A small stand-in for a DHIS2 app-platform app, used by Herald's browser tests.",
        }
    ]
    assert for_mobile == []  # mobile lacks M_dhis-web-herald-test


def test_a_menu_entry_links_the_app_s_icon_absolutely(site: LiveServer) -> None:
    assert upload(site.client("admin"), notes_app()).status_code == 204

    (module,) = site.client("admin").get("/dhis-web-commons/menu/getModules.action").json()["modules"]

    assert (module["name"], module["defaultAction"]) == ("notes", f"{site.url}/api/apps/notes/")
    assert module["icon"] == f"{site.url}/api/apps/notes/icon.png"


def test_the_root_sends_browsers_to_the_installed_app(site: LiveServer) -> None:
    anonymous = site.client(None)
    assert anonymous.get("/").status_code == 200  # nothing installed: a page saying how to install

    install_test_app(site)

    assert anonymous.get("/").headers["location"] == f"{PREFIX}/"


def test_deleting_an_app_stops_serving_it_and_a_second_delete_is_a_404(site: LiveServer) -> None:
    install_test_app(site)
    admin = site.client("admin")

    deleted = admin.delete("/api/apps/herald-test")

    assert deleted.status_code == 204
    assert admin.get("/api/apps").json() == []
    assert site.client(None).get(f"{PREFIX}/").status_code == 404
    assert_web_message(admin.delete("/api/apps/herald-test"), 404, "App does not exist: herald-test")


def test_installing_again_replaces_the_app(site: LiveServer) -> None:
    install_test_app(site)
    manifest = json.loads((WEBAPP / "manifest.webapp").read_text())
    newer = zip_of(
        {
            "manifest.webapp": json.dumps({**manifest, "version": "1.0.1"}).encode(),
            "index.html": b"<title>v2</title>",
        }
    )

    assert upload(site.client("admin"), newer).status_code == 204

    assert [a["version"] for a in site.client("admin").get("/api/apps").json()] == ["1.0.1"]
    assert site.client(None).get(f"{PREFIX}/assets/app-1a2b3c4d5e.js").status_code == 404


# ---------------------------------------------------------------- refusals


def test_a_zip_slip_entry_is_refused_and_nothing_is_written_outside_the_apps_folder(site: LiveServer) -> None:
    manifest = (WEBAPP / "manifest.webapp").read_bytes()
    evil = zip_of({"manifest.webapp": manifest, "../../evil.txt": b"pwned", "index.html": b"x"})

    response = upload(site.client("admin"), evil)

    assert_web_message(response, 409, "unsafe path")
    apps_dir = site.settings.apps_dir
    assert not (apps_dir.parent / "evil.txt").exists() and not (apps_dir.parent.parent / "evil.txt").exists()
    assert site.client("admin").get("/api/apps").json() == []


def test_a_body_over_the_app_size_limit_is_refused_with_413(site: LiveServer) -> None:
    too_big = zip_of({"manifest.webapp": (WEBAPP / "manifest.webapp").read_bytes(), "blob.bin": os.urandom(MAX_APP_BYTES + 70_000)})

    assert_web_message(upload(site.client("admin"), too_big), 413, "larger than the limit")


def test_a_zip_that_unpacks_over_the_limit_is_refused_with_413(site: LiveServer) -> None:
    bomb = zip_of({"manifest.webapp": (WEBAPP / "manifest.webapp").read_bytes(), "zeros.bin": bytes(4 * MAX_APP_BYTES)})
    assert len(bomb) < MAX_APP_BYTES

    assert_web_message(upload(site.client("admin"), bomb), 413, "unpacks to more than the limit")
    assert site.client("admin").get("/api/apps").json() == []


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (zip_of({"index.html": b"<title>no manifest</title>"}), "no manifest.webapp"),
        (b"this is not a zip file at all", "not a valid zip file"),
    ],
)
def test_a_package_that_is_not_an_app_is_refused_with_409(site: LiveServer, data: bytes, text: str) -> None:
    assert_web_message(upload(site.client("admin"), data), 409, text)


def test_an_upload_without_the_file_field_is_a_400(site: LiveServer) -> None:
    response = site.client("admin").post("/api/apps", files={"other": ("app.zip", b"x", "application/zip")})

    assert_web_message(response, 400, "'file'")


def test_a_user_without_app_management_may_neither_install_nor_delete(site: LiveServer) -> None:
    install_test_app(site)
    mobile = site.client("mobile")
    required = "Access is denied, requires one Authority from [M_dhis-web-app-management]"

    assert_web_message(upload(mobile, notes_app()), 403, required)
    assert_web_message(mobile.delete("/api/apps/herald-test"), 403, required)
    assert [a["key"] for a in mobile.get("/api/apps").json()] == ["herald-test"]


def test_an_anonymous_upload_is_a_401(site: LiveServer) -> None:
    assert upload(site.client(None), zip_directory(WEBAPP)).status_code == 401


# ---------------------------------------------------------------- the CLI


def _cli_env(apps_dir: Path) -> dict[str, str | None]:
    cleared: dict[str, str | None] = {key: None for key in os.environ if key.startswith("HERALD_")}
    return {**cleared, "HERALD_APPS_DIR": str(apps_dir)}


def test_herald_apps_install_unpacks_a_zip_into_herald_apps_dir(tmp_path: Path) -> None:
    package = tmp_path / "herald-test-1.0.0.zip"
    package.write_bytes(zip_directory(WEBAPP, folder="herald-test-1.0.0"))

    result = CliRunner().invoke(cli.app, ["apps", "install", str(package)], env=_cli_env(tmp_path / "apps"))

    assert result.exit_code == 0, result.output
    assert "installed Herald test inbox 1.0.0 at /dhis-web-herald-test/" in result.output
    assert (tmp_path / "apps" / "herald-test" / "index.html").is_file()


def test_herald_apps_install_refuses_a_bad_zip_with_the_reason(tmp_path: Path) -> None:
    package = tmp_path / "broken.zip"
    package.write_bytes(zip_of({"index.html": b"x"}))

    result = CliRunner().invoke(cli.app, ["apps", "install", str(package)], env=_cli_env(tmp_path / "apps"))

    assert result.exit_code == 1
    assert "no manifest.webapp" in result.output
