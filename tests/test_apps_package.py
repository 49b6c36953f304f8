"""Installing DHIS2 app zips: what is accepted, what is refused, and how the files are served."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from messaging import apps
from messaging.apps import AppError, AppTooLarge, InstalledApp

LIMIT = 1024 * 1024


def manifest(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "short_name": "messaging",
        "name": "Messaging",
        "version": "100.0.47",
        "core_app": True,
        "launch_path": "index.html",
    }
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def make_zip(files: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=zipfile.ZIP_DEFLATED)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def app_zip(version: str = "100.0.47", extra: dict[str, bytes] | None = None) -> bytes:
    return make_zip(
        {
            "manifest.webapp": manifest(version=version),
            "index.html": b'<meta name="dhis2-base-url" content="__DHIS2_BASE_URL__">',
            "assets/index-3f2a9c1b.js": b"console.log(1)",
            **(extra or {}),
        }
    )


def leftovers(apps_dir: Path) -> list[str]:
    return sorted(p.name for p in apps_dir.iterdir() if p.name.startswith(".") and p.name != ".lock")


# --- installing ----------------------------------------------------------------------------------


def test_a_zip_with_the_manifest_at_its_root_installs_under_its_short_name(tmp_path: Path) -> None:
    app = apps.install_zip(app_zip(), tmp_path, max_bytes=LIMIT)

    assert (app.key, app.name, app.short_name, app.version, app.core_app) == (
        "messaging",
        "Messaging",
        "messaging",
        "100.0.47",
        True,
    )
    assert app.path == tmp_path / "messaging"
    assert (app.path / "assets" / "index-3f2a9c1b.js").read_bytes() == b"console.log(1)"
    assert app.manifest["launch_path"] == "index.html"
    assert leftovers(tmp_path) == []


def test_a_zip_with_everything_in_one_top_level_folder_installs_that_folders_content(tmp_path: Path) -> None:
    data = make_zip(
        {
            "messaging-100.0.47/manifest.webapp": manifest(),
            "messaging-100.0.47/index.html": b"<html></html>",
            "messaging-100.0.47/assets/a.js": b"1",
        }
    )

    app = apps.install_zip(data, tmp_path, max_bytes=LIMIT)

    assert sorted(p.relative_to(app.path).as_posix() for p in app.path.rglob("*") if p.is_file()) == [
        "assets/a.js",
        "index.html",
        "manifest.webapp",
    ]


def test_a_file_object_installs_like_bytes(tmp_path: Path) -> None:
    app = apps.install_zip(io.BytesIO(app_zip()), tmp_path, max_bytes=LIMIT)

    assert app.key == "messaging"


def test_an_app_without_short_name_is_keyed_by_a_slug_of_its_name(tmp_path: Path) -> None:
    data = make_zip(
        {"manifest.webapp": manifest(short_name=None, name="Données & Stock  Tracker!", core_app=None)}
    )

    app = apps.install_zip(data, tmp_path, max_bytes=LIMIT)

    assert app.key == "donnees-stock-tracker"
    assert app.core_app is False


def test_a_manifest_with_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    app = apps.install_zip(
        make_zip({"manifest.webapp": b"\xef\xbb\xbf" + manifest()}), tmp_path, max_bytes=LIMIT
    )

    assert app.key == "messaging"


def test_macos_resource_folders_are_ignored(tmp_path: Path) -> None:
    data = make_zip({"app/manifest.webapp": manifest(), "__MACOSX/app/._manifest.webapp": b"junk"})

    app = apps.install_zip(data, tmp_path, max_bytes=LIMIT)

    assert not (app.path / "__MACOSX").exists()


# --- refusing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil.js", "assets/../../evil.js", "/etc/evil", "C:/evil.js", "c:evil.js", "assets\\..\\evil.js"],
)
def test_an_entry_that_could_escape_the_app_folder_is_refused(tmp_path: Path, name: str) -> None:
    apps_dir = tmp_path / "apps"

    with pytest.raises(AppError, match="unsafe path"):
        apps.install_zip(app_zip(extra={name: b"pwned"}), apps_dir, max_bytes=LIMIT)

    assert not (tmp_path / "evil.js").exists()
    assert apps.list_apps(apps_dir) == []


def test_a_symbolic_link_entry_is_refused(tmp_path: Path) -> None:
    data = make_zip({"manifest.webapp": manifest()}, symlinks={"assets/passwd": "/etc/passwd"})

    with pytest.raises(AppError, match="symbolic link"):
        apps.install_zip(data, tmp_path, max_bytes=LIMIT)

    assert apps.list_apps(tmp_path) == []


def test_a_zip_without_a_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AppError, match=r"no manifest\.webapp"):
        apps.install_zip(make_zip({"index.html": b"<html></html>"}), tmp_path, max_bytes=LIMIT)


def test_a_manifest_nested_deeper_than_one_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(AppError, match=r"no manifest\.webapp"):
        apps.install_zip(make_zip({"a/b/manifest.webapp": manifest()}), tmp_path, max_bytes=LIMIT)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": "1.0"}', "has no name"),
        (b'{"name": "   "}', "has no name"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"name": "!!!"}', "no usable key"),
    ],
)
def test_an_invalid_manifest_is_refused_with_the_reason(tmp_path: Path, content: bytes, problem: str) -> None:
    with pytest.raises(AppError, match=problem):
        apps.install_zip(make_zip({"manifest.webapp": content}), tmp_path, max_bytes=LIMIT)


def test_bytes_that_are_not_a_zip_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AppError, match="not a valid zip"):
        apps.install_zip(b"<html>definitely not a zip</html>", tmp_path, max_bytes=LIMIT)


def test_a_package_over_the_limit_is_refused_before_unpacking(tmp_path: Path) -> None:
    data = app_zip(extra={"assets/big.bin": os.urandom(4096)})

    with pytest.raises(AppTooLarge, match="larger than the limit"):
        apps.install_zip(data, tmp_path, max_bytes=len(data) - 1)


def test_a_file_object_over_the_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    stream = io.BytesIO(b"\0" * (10 * LIMIT))

    with pytest.raises(AppTooLarge):
        apps.install_zip(stream, tmp_path, max_bytes=LIMIT)

    assert stream.tell() == LIMIT + 1


def test_a_zip_bomb_of_zeros_is_refused_by_its_unpacked_size(tmp_path: Path) -> None:
    data = app_zip(extra={"assets/zeros.bin": b"\0" * (20 * LIMIT)})
    assert len(data) < LIMIT  # small on the wire, 20 MiB unpacked

    with pytest.raises(AppTooLarge, match="unpacks to more than"):
        apps.install_zip(data, tmp_path, max_bytes=LIMIT)

    assert list(tmp_path.iterdir()) == []


def test_a_zip_whose_headers_understate_a_files_size_is_refused(tmp_path: Path) -> None:
    zeros = b"\0" * (4 * LIMIT)
    data = bytearray(app_zip(extra={"assets/zeros.bin": zeros}))
    # rewrite the declared size (4 MiB) to 1 KiB in the local and the central header
    real, fake = len(zeros).to_bytes(4, "little"), (1024).to_bytes(4, "little")
    assert data.count(real) == 2
    data = bytearray(bytes(data).replace(real, fake))

    with pytest.raises(AppError, match="cannot be unpacked"):
        apps.install_zip(bytes(data), tmp_path, max_bytes=LIMIT)

    assert apps.list_apps(tmp_path) == [] and leftovers(tmp_path) == []


def test_a_zip_with_too_many_entries_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apps, "MAX_ENTRIES", 3)

    with pytest.raises(AppTooLarge, match="more than 3 files"):
        apps.install_zip(app_zip(extra={"a.txt": b"", "b.txt": b""}), tmp_path, max_bytes=LIMIT)


def test_a_zip_naming_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    data = make_zip({"manifest.webapp": manifest(), "./index.html": b"1", "index.html": b"2"})

    with pytest.raises(AppError, match="twice"):
        apps.install_zip(data, tmp_path, max_bytes=LIMIT)


def test_a_core_app_cannot_take_the_dhis_web_commons_paths(tmp_path: Path) -> None:
    data = make_zip({"manifest.webapp": manifest(short_name="commons-security")})

    with pytest.raises(AppError, match="reserved"):
        apps.install_zip(data, tmp_path, max_bytes=LIMIT)


def test_app_errors_carry_a_user_facing_message_and_an_http_status() -> None:
    error = AppTooLarge("The app package is larger than the limit of 1.0 MiB.")

    assert isinstance(error, AppError)
    assert error.message == "The app package is larger than the limit of 1.0 MiB."
    assert (AppError("x").status, error.status) == (409, 413)


# --- replacing -----------------------------------------------------------------------------------


def test_a_new_version_replaces_the_old_one_and_its_stale_files(tmp_path: Path) -> None:
    apps.install_zip(app_zip("1.0.0", extra={"assets/old-1a2b3c4d.js": b"old"}), tmp_path, max_bytes=LIMIT)

    app = apps.install_zip(app_zip("2.0.0"), tmp_path, max_bytes=LIMIT)

    assert app.version == "2.0.0"
    assert not (app.path / "assets" / "old-1a2b3c4d.js").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "bad_files",
    [
        {"manifest.webapp": manifest(), "../evil": b"x"},
        {"manifest.webapp": manifest(), "assets/zeros.bin": b"\0" * (2 * LIMIT)},
    ],
)
def test_a_failed_reinstall_keeps_the_installed_version_intact(
    tmp_path: Path, bad_files: dict[str, bytes]
) -> None:
    apps.install_zip(app_zip("1.0.0"), tmp_path, max_bytes=LIMIT)

    with pytest.raises(AppError):
        apps.install_zip(make_zip(bad_files), tmp_path, max_bytes=LIMIT)

    app = apps.get_app(tmp_path, "messaging")
    assert app is not None and app.version == "1.0.0"
    assert (app.path / "assets" / "index-3f2a9c1b.js").is_file()
    assert leftovers(tmp_path) == []


def test_a_reinstall_that_breaks_while_unpacking_keeps_the_old_version(tmp_path: Path) -> None:
    apps.install_zip(app_zip("1.0.0"), tmp_path, max_bytes=LIMIT)
    data = bytearray(app_zip("2.0.0", extra={"assets/z.bin": b"\0" * 4096}))
    real = (4096).to_bytes(4, "little")
    data = bytearray(bytes(data).replace(real, (100).to_bytes(4, "little")))  # fails its CRC check

    with pytest.raises(AppError):
        apps.install_zip(bytes(data), tmp_path, max_bytes=LIMIT)

    app = apps.get_app(tmp_path, "messaging")
    assert app is not None and app.version == "1.0.0"
    assert leftovers(tmp_path) == []


def test_a_failure_while_moving_the_new_version_in_puts_the_old_one_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps.install_zip(app_zip("1.0.0"), tmp_path, max_bytes=LIMIT)
    real_replace = os.replace
    calls: list[str] = []

    def replace_failing_on_the_move_in(src: Any, dst: Any) -> None:
        calls.append(Path(src).name)
        if Path(src).name.startswith(".tmp-"):
            raise OSError("disk on fire")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing_on_the_move_in)
    with pytest.raises(OSError, match="disk on fire"):
        apps.install_zip(app_zip("2.0.0"), tmp_path, max_bytes=LIMIT)
    monkeypatch.undo()

    app = apps.get_app(tmp_path, "messaging")
    assert app is not None and app.version == "1.0.0"
    assert calls[0] == "messaging"  # the old version really was moved aside, then back
    assert leftovers(tmp_path) == []


# --- finding, deleting, launching ----------------------------------------------------------------


def test_installed_apps_are_listed_found_by_key_and_by_launch_prefix(tmp_path: Path) -> None:
    apps.install_zip(app_zip(), tmp_path, max_bytes=LIMIT)
    apps.install_zip(
        make_zip({"manifest.webapp": manifest(short_name="bna", name="Bulk", core_app=False)}),
        tmp_path,
        max_bytes=LIMIT,
    )
    (tmp_path / "broken").mkdir()  # no manifest: not an app

    assert [app.key for app in apps.list_apps(tmp_path)] == ["bna", "messaging"]
    messaging = apps.get_app(tmp_path, "messaging")
    assert messaging is not None
    assert apps.find_by_launch_prefix(tmp_path, "messaging") == messaging
    assert apps.find_by_launch_prefix(tmp_path, "bna") is None  # not a core app
    assert apps.get_app(tmp_path, "broken") is None
    assert apps.get_app(tmp_path, "../messaging") is None
    assert apps.list_apps(tmp_path / "missing") == []


def test_deleting_an_app_removes_its_folder_and_reports_whether_there_was_one(tmp_path: Path) -> None:
    apps.install_zip(app_zip(), tmp_path, max_bytes=LIMIT)

    assert apps.delete_app(tmp_path, "messaging") is True
    assert apps.delete_app(tmp_path, "messaging") is False
    assert apps.delete_app(tmp_path, "..") is False
    assert apps.get_app(tmp_path, "messaging") is None
    assert leftovers(tmp_path) == []


def _app(core_app: bool) -> InstalledApp:
    return InstalledApp(
        key="bulk-load",
        name="Bulk load",
        short_name="bulk-load",
        version="1",
        core_app=core_app,
        manifest={},
        path=Path("/nowhere"),
    )


def test_a_core_app_launches_under_dhis_web_and_any_other_under_api_apps() -> None:
    assert _app(core_app=True).launch_path == "/dhis-web-bulk-load/"
    assert _app(core_app=False).launch_path == "/api/apps/bulk-load/"


def test_an_installed_app_can_be_hashed_and_compared() -> None:
    assert hash(_app(True)) == hash(_app(True)) and _app(True) == _app(True)


# --- serving -------------------------------------------------------------------------------------


def test_assets_resolve_inside_the_app_folder_and_a_folder_means_its_index(tmp_path: Path) -> None:
    app = apps.install_zip(app_zip(), tmp_path, max_bytes=LIMIT)

    assert (
        apps.resolve_asset(app, "assets/index-3f2a9c1b.js") == app.path.resolve() / "assets/index-3f2a9c1b.js"
    )
    assert apps.resolve_asset(app, "") == app.path.resolve() / "index.html"
    assert apps.resolve_asset(app, "/./index.html") == app.path.resolve() / "index.html"
    assert apps.resolve_asset(app, "assets") is None  # a folder without index.html
    assert apps.resolve_asset(app, "missing.js") is None


@pytest.mark.parametrize(
    "relative", ["../messaging/index.html", "assets/../../x", "..\\x", "a\x00b", "/etc/passwd/../../.."]
)
def test_asset_paths_that_climb_out_are_refused(tmp_path: Path, relative: str) -> None:
    app = apps.install_zip(app_zip(), tmp_path, max_bytes=LIMIT)

    assert apps.resolve_asset(app, relative) is None


def test_a_symlink_placed_in_the_app_folder_cannot_leak_files_outside(tmp_path: Path) -> None:
    app = apps.install_zip(app_zip(), tmp_path / "apps", max_bytes=LIMIT)
    (tmp_path / "secret.txt").write_text("secret")
    (app.path / "leak.txt").symlink_to(tmp_path / "secret.txt")

    assert apps.resolve_asset(app, "leak.txt") is None


def test_the_index_gets_the_base_url_in_place_of_the_placeholder() -> None:
    index = b'<head><meta name="dhis2-base-url" content="__DHIS2_BASE_URL__"></head>'

    rendered = apps.render_index(_app(True), index, "http://127.0.0.1:8080")

    assert rendered == b'<head><meta name="dhis2-base-url" content="http://127.0.0.1:8080"></head>'


def test_a_base_url_cannot_break_out_of_the_meta_attribute() -> None:
    index = b'<meta name="dhis2-base-url" content="__DHIS2_BASE_URL__">'

    rendered = apps.render_index(_app(True), index, '"><script>alert(1)</script>')

    assert b"<script>" not in rendered and b"&quot;&gt;&lt;script&gt;" in rendered


def test_an_index_without_the_placeholder_is_served_unchanged() -> None:
    assert apps.render_index(_app(True), b"<html></html>", "..") == b"<html></html>"


@pytest.mark.parametrize(
    "relative",
    [
        "assets/index-3f2a9c1b.js",
        "assets/index-BvT3x9kQ.js",
        "static/js/main.8e4a1f2c.chunk.js",
        "static/js/787.8e4a1f2c.chunk.js",
        "static/css/main.8e4a1f2c.css",
        "static/js/main.8e4a1f2c.chunk.js.map",
        "assets/roboto-latin-400-normal-3f2a9c1b.woff2",
        "0a1b2c3d4e5f6a7b8c9d.js",
    ],
)
def test_content_hashed_files_are_cached_for_a_year(relative: str) -> None:
    assert apps.cache_control_for(relative) == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    "relative",
    [
        "index.html",
        "",
        "manifest.webapp",
        "favicon.ico",
        "assets/messaging.js",
        "plugin.html",
        "assets/vendor-react.js",
        "locales/en/translations.json",
        "dhis2-app-icon.png",
        "app-v1.js",
    ],
)
def test_everything_else_is_revalidated(relative: str) -> None:
    assert apps.cache_control_for(relative) == "no-cache"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("assets/index-3f2a9c1b.js", "text/javascript"),
        ("worker.MJS", "text/javascript"),
        ("style.css", "text/css"),
        ("index.html", "text/html"),
        ("data.json", "application/json"),
        ("manifest.webapp", "application/json"),
        ("font.woff2", "font/woff2"),
        ("font.woff", "font/woff"),
        ("logo.png", "image/png"),
        ("icon.svg", "image/svg+xml"),
        ("favicon.ico", "image/x-icon"),
        ("main.js.map", "application/json"),
        ("LICENSE.txt", "text/plain"),
        ("photo.jpeg", "image/jpeg"),
        ("blob.unknownext", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_files_are_served_with_their_content_type(name: str, content_type: str) -> None:
    assert apps.content_type_for(name) == content_type
    assert apps.content_type_for(Path(name)) == content_type
