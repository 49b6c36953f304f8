"""Installed DHIS2 web apps: unpack App Hub zips into a folder and describe what to serve.

Layout: `apps_dir/{key}/` holds one app exactly as its zip had it, `manifest.webapp` at the top.
Work in progress lives in dot-folders (`.tmp-*`, `.old-*`, `.del-*`) that no reader lists, and a
new version replaces the old one by directory renames, so a reader sees the old app or the new
one, never half of either.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import io
import mimetypes
import os
import re
import shutil
import stat
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from messaging.errors import HeraldError
from messaging.jsonbounds import JsonBoundsError, load_json

MANIFEST = "manifest.webapp"
BASE_URL_PLACEHOLDER = b"__DHIS2_BASE_URL__"
MAX_ENTRIES = 10_000  # an App Hub app has hundreds of files; a flood of empty ones is an attack
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

_KEY = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_DRIVE = re.compile(r"[A-Za-z]:")
# A bundler's content hash: 8+ characters of hex or base64url mixing letters and digits, so that
# words such as "manifest" or "messaging" never count. A hash missed here is only revalidated.
_HASH = re.compile(r"(?=[A-Za-z0-9_]*[0-9])(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{8,}")
_HASH_ONLY_NAME = re.compile(r"[0-9a-f]{16,}")  # webpack's bare [contenthash].js
_COPY_CHUNK = 1 << 16

# Python's table lacks some of these and differs between versions and hosts (/etc/mime.types).
_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
    ".webapp": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
}


class AppError(HeraldError):
    """An app package cannot be installed; `message` says why, in words for the person uploading."""

    status = 409  # DHIS2 answers a refused app upload with 409 Conflict


class AppTooLarge(AppError):
    """The package, or what it unpacks to, exceeds the configured size limit."""

    status = 413


@dataclass(frozen=True)
class InstalledApp:
    """One unpacked app; `path` is its folder, `manifest` its parsed manifest.webapp."""

    key: str
    name: str
    short_name: str
    version: str
    core_app: bool
    manifest: dict[str, Any] = field(hash=False)
    path: Path

    @property
    def launch_path(self) -> str:
        """The URL path the app is served at: core apps at /dhis-web-{short_name}/ like DHIS2."""
        if self.core_app:
            return f"/dhis-web-{self.short_name}/"
        return f"/api/apps/{self.key}/"


def install_zip(data: bytes | BinaryIO, apps_dir: Path, *, max_bytes: int) -> InstalledApp:
    """Unpack an App Hub-style zip into apps_dir, replacing any installed version atomically."""
    raw = _read_limited(data, max_bytes)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError) as exc:
        raise AppError("The app package is not a valid zip file.") from exc
    with archive:
        members = _checked_members(archive, max_bytes)
        prefix = _manifest_prefix(members)
        manifest = _parse_manifest(_read_member(archive, members[(*prefix, MANIFEST)]))
        key = _key_for(manifest)
        if manifest.get("core_app") is True and key.startswith("commons"):
            # /dhis-web-commons*/ carries the login, logout and menu endpoints
            raise AppError(f"The app name '{key}' is reserved.")
        apps_dir.mkdir(parents=True, exist_ok=True)
        staging = apps_dir / f".tmp-{key}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            _extract(archive, members, prefix, staging, max_bytes)
            _swap_in(staging, apps_dir, key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful swap
    app = _load(apps_dir / key)
    if app is None:  # pragma: no cover - the manifest was validated above
        raise AppError("The app was unpacked but could not be read back.")
    return app


def list_apps(apps_dir: Path) -> list[InstalledApp]:
    """Every readable installed app, sorted by key."""
    if not apps_dir.is_dir():
        return []
    found = (_load(entry) for entry in sorted(apps_dir.iterdir()) if _KEY.fullmatch(entry.name))
    return [app for app in found if app is not None]


def get_app(apps_dir: Path, key: str) -> InstalledApp | None:
    """The installed app with this key, or None."""
    if not _KEY.fullmatch(key):
        return None
    return _load(apps_dir / key)


def find_by_launch_prefix(apps_dir: Path, short_name: str) -> InstalledApp | None:
    """The core app served at /dhis-web-{short_name}/, or None."""
    app = get_app(apps_dir, short_name)
    if app is None or not app.core_app or app.short_name != short_name:
        return None
    return app


def delete_app(apps_dir: Path, key: str) -> bool:
    """Remove an installed app; False when there was none."""
    if not _KEY.fullmatch(key):
        return False
    target = apps_dir / key
    if not target.is_dir():
        return False
    doomed = apps_dir / f".del-{key}-{uuid.uuid4().hex}"
    with _install_lock(apps_dir):
        if not target.is_dir():  # another process deleted it meanwhile
            return False
        os.replace(target, doomed)  # readers stop seeing it at once; the slow delete follows
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def resolve_asset(app: InstalledApp, relative: str) -> Path | None:
    """The file for a URL path inside the app (a folder means its index.html), or None."""
    if "\\" in relative or "\x00" in relative:
        return None
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    root = app.path.resolve()
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root):  # a symlink pointing out of the folder
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


def render_index(app: InstalledApp, index_bytes: bytes, base_url: str) -> bytes:
    """index.html with the dhis2-base-url placeholder set to base_url, as DHIS2 core >= 2.41 does."""
    return index_bytes.replace(BASE_URL_PLACEHOLDER, html.escape(base_url, quote=True).encode())


def cache_control_for(relative: str) -> str:
    """Cache-Control for an app file: content-hashed names are immutable, everything else revalidates."""
    segments = re.split(r"[.-]", PurePosixPath(relative).name)
    # the first segment is the chunk's name and the last the extension; a hash sits between them
    if any(_HASH.fullmatch(segment) for segment in segments[1:-1]):
        return IMMUTABLE
    if len(segments) > 1 and _HASH_ONLY_NAME.fullmatch(segments[0]):
        return IMMUTABLE
    return NO_CACHE


def content_type_for(path: str | os.PathLike[str]) -> str:
    """The Content-Type to serve an app file with (module scripts need a JavaScript type)."""
    suffix = PurePosixPath(os.fspath(path)).suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(f"file{suffix}")
    return guessed or "application/octet-stream"


def _read_limited(data: bytes | BinaryIO, max_bytes: int) -> bytes:
    raw = data if isinstance(data, bytes) else data.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise AppTooLarge(f"The app package is larger than the limit of {_size(max_bytes)}.")
    return raw


def _checked_members(archive: zipfile.ZipFile, max_bytes: int) -> dict[tuple[str, ...], zipfile.ZipInfo]:
    """Map each entry's safe relative path to its ZipInfo, refusing anything unsafe."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise AppTooLarge(f"The app package has more than {MAX_ENTRIES} files.")
    if sum(info.file_size for info in infos) > max_bytes:
        raise AppTooLarge(f"The app package unpacks to more than the limit of {_size(max_bytes)}.")
    members: dict[tuple[str, ...], zipfile.ZipInfo] = {}
    for info in infos:
        parts = _safe_parts(info.filename)
        if not parts or parts[0] == "__MACOSX":  # macOS Finder's resource-fork folder
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise AppError(f"The app package contains a symbolic link: {info.filename!r}.")
        if info.flag_bits & 0x1:
            raise AppError(f"The app package contains an encrypted file: {info.filename!r}.")
        if info.is_dir():
            continue
        if parts in members:
            raise AppError(f"The app package contains {info.filename!r} twice.")
        members[parts] = info
    for parts in members:  # "a" as a file and "a/b" cannot both be unpacked
        for depth in range(1, len(parts)):
            if parts[:depth] in members:
                raise AppError(f"The app package uses {'/'.join(parts[:depth])!r} as file and folder.")
    return members


def _safe_parts(name: str) -> tuple[str, ...]:
    if "\\" in name or "\x00" in name or name.startswith("/") or _DRIVE.match(name):
        raise AppError(f"The app package contains an unsafe path: {name!r}.")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise AppError(f"The app package contains an unsafe path: {name!r}.")
    return parts


def _manifest_prefix(members: dict[tuple[str, ...], zipfile.ZipInfo]) -> tuple[str, ...]:
    """() when manifest.webapp is at the root, (folder,) when everything sits in one folder."""
    if (MANIFEST,) in members:
        return ()
    tops = {parts[0] for parts in members}
    if len(tops) == 1 and all(len(parts) > 1 for parts in members):
        (top,) = tops
        if (top, MANIFEST) in members:
            return (top,)
    raise AppError("The app package has no manifest.webapp at its top level.")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, RuntimeError) as exc:
        raise AppError(f"The app package's {info.filename!r} cannot be read: {exc}.") from exc


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = load_json(raw)
    except JsonBoundsError as exc:
        raise AppError(f"The app's manifest.webapp is not valid JSON: {exc}.") from exc
    if not isinstance(manifest, dict):
        raise AppError("The app's manifest.webapp is not a JSON object.")
    name = manifest.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AppError("The app's manifest.webapp has no name.")
    return manifest


def _key_for(manifest: dict[str, Any]) -> str:
    """The manifest's short_name, else a slug of its name; lowercase letters, digits and dashes."""
    short_name = manifest.get("short_name")
    source = short_name if isinstance(short_name, str) and short_name.strip() else manifest["name"]
    key = _slug(source)
    if not key:
        raise AppError(f"The app name {source!r} gives no usable key.")
    return key


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:64].strip("-")


def _extract(
    archive: zipfile.ZipFile,
    members: dict[tuple[str, ...], zipfile.ZipInfo],
    prefix: tuple[str, ...],
    target: Path,
    max_bytes: int,
) -> None:
    written = 0
    for parts, info in members.items():
        relative = parts[len(prefix) :]
        destination = target.joinpath(*relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as source, destination.open("xb") as sink:
                while chunk := source.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:  # the headers lied about the sizes
                        raise AppTooLarge(
                            f"The app package unpacks to more than the limit of {_size(max_bytes)}."
                        )
                    sink.write(chunk)
        except (zipfile.BadZipFile, NotImplementedError, EOFError, RuntimeError) as exc:
            raise AppError(f"The app package's {info.filename!r} cannot be unpacked: {exc}.") from exc


def _swap_in(staging: Path, apps_dir: Path, key: str) -> None:
    """Put the staged folder at apps_dir/key: old version aside, new one in, old one deleted."""
    target = apps_dir / key
    aside = apps_dir / f".old-{key}-{uuid.uuid4().hex}"
    with _install_lock(apps_dir):
        had_old = target.exists() or target.is_symlink()
        if had_old:
            os.replace(target, aside)
        try:
            os.replace(staging, target)
        except BaseException:
            if had_old:
                os.replace(aside, target)
            raise
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _install_lock(apps_dir: Path) -> Iterator[None]:
    """Serialise swaps across threads and processes that share apps_dir."""
    with (apps_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(folder: Path) -> InstalledApp | None:
    """Read an app folder; None when it is missing or its manifest is broken."""
    try:
        manifest = _parse_manifest((folder / MANIFEST).read_bytes())
    except (OSError, AppError):
        return None
    version = manifest.get("version")
    return InstalledApp(
        key=folder.name,
        name=manifest["name"],
        short_name=folder.name,  # the key is the normalised short_name, or the name's slug
        version="" if version is None else str(version),
        core_app=manifest.get("core_app") is True,
        manifest=manifest,
        path=folder,
    )


def _size(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MiB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.1f} KiB"
    return f"{n_bytes} bytes"
