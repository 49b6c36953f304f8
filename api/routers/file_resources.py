"""Message attachments: upload (/api/fileResources, /api/messageConversations/attachments) and download.

Uploads are limited to messaging.attachments.MAX_ATTACHMENT_BYTES (10 MiB), a fixed limit apart
from HERALD_MAX_BODY_BYTES. Register this router before /api/messageConversations: its
`POST /attachments` would otherwise be taken for a reply to a conversation named "attachments".
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, UploadFile
from starlette.responses import Response

from api.deps import Ctx, CtxDep, SessionClosingRoute
from api.queries import FileResourceParams
from api.render import base_url, respond, respond_message
from messaging import attachments
from messaging.errors import BadRequest
from messaging.models import FileResource, User

router = APIRouter(tags=["fileResources"], route_class=SessionClosingRoute)
# A file opened from its download link must not run as a page of Herald's origin.
DOWNLOAD_HEADERS = {"Content-Security-Policy": "sandbox; default-src 'none'", "X-Content-Type-Options": "nosniff"}
_TOKEN = re.compile(r"[A-Za-z0-9!#$&+.^_`|~-]+")

Upload = Annotated[UploadFile | None, File()]


def _read(file: UploadFile | None) -> tuple[str | None, str | None, bytes]:
    if file is None:
        raise BadRequest("Required request part 'file' is not present")
    return file.filename, file.content_type, file.file.read(attachments.MAX_ATTACHMENT_BYTES + 1)


def file_resource_dict(resource: FileResource, base: str) -> dict[str, Any]:
    """A file resource as DHIS2's FileResource JSON."""
    return {
        "id": resource.uid,
        "href": f"{base}/api/fileResources/{resource.uid}",
        "name": resource.name,
        "displayName": resource.name,
        "created": resource.created,
        "lastUpdated": resource.last_updated,
        "contentType": resource.content_type,
        "contentLength": resource.content_length,
        "contentMd5": resource.content_md5,
        "domain": resource.domain,
        "storageStatus": "STORED",
        "hasMultipleStorageFiles": False,
    }


def _store(ctx: Ctx, file: UploadFile | None) -> FileResource:
    filename, content_type, data = _read(file)
    limits = attachments.UploadLimits(
        max_count=ctx.settings.max_unattached_uploads, max_bytes=ctx.settings.max_unattached_upload_bytes
    )
    resource = attachments.store_upload(
        ctx.session, owner=ctx.user, filename=filename, content_type=content_type, data=data, limits=limits
    )
    ctx.session.commit()
    return resource


@router.post("/api/fileResources", status_code=202)
def upload_file_resource(ctx: CtxDep, query: FileResourceParams, file: Upload = None) -> Response:
    """Store an upload (domain MESSAGE_ATTACHMENT); 202 with `response.fileResource`, as DHIS2."""
    attachments.check_domain(query.domain)
    resource = _store(ctx, file)
    fields = file_resource_dict(resource, base_url(ctx.request, ctx.settings.base_url))
    return respond_message(ctx.request, 202, response={"responseType": "FileResource", "fileResource": fields})


@router.get("/api/fileResources/{uid}")
def get_file_resource(ctx: CtxDep, uid: str) -> Response:
    """An uploaded file's description, for its uploader (ALL: any)."""
    resource = attachments.uploaded_by(ctx.session, ctx.user, uid)
    return respond(ctx.request, file_resource_dict(resource, base_url(ctx.request, ctx.settings.base_url)), xml_root="fileResource")


@router.post("/api/messageConversations/attachments", status_code=202)
def upload_attachment(ctx: CtxDep, file: Upload = None) -> Response:
    """The documented upload: answers the attachment object the DHIS2 doc shows (DECISIONS #10)."""
    resource = _store(ctx, file)
    owner = ctx.session.get(User, ctx.user.id)
    assert owner is not None  # the caller was just authenticated
    user = {
        "name": owner.display_name,
        "created": owner.created,
        "lastUpdated": owner.last_updated,
        "externalAccess": False,
        "displayName": owner.display_name,
        "favorite": False,
        "id": owner.uid,
    }
    body = {
        "created": resource.created,
        "lastUpdated": resource.last_updated,
        "externalAccess": False,
        "publicAccess": "--------",
        "user": user,
        "lastUpdatedBy": {"id": owner.uid, "name": owner.display_name},
        "favorite": False,
        "id": resource.uid,
        "name": resource.name,
        "contentType": resource.content_type,
        "contentLength": resource.content_length,
    }
    return respond(ctx.request, body, status_code=202, xml_root="fileResource")


def content_disposition(name: str) -> str:
    """DHIS2's `filename=<name>`; quoted with an RFC 5987 UTF-8 form when the name needs it."""
    if _TOKEN.fullmatch(name):
        return f"filename={name}"
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get("/api/messageConversations/{conversation_uid}/{message_uid}/attachments/{file_uid}")
def download_attachment(ctx: CtxDep, conversation_uid: str, message_uid: str, file_uid: str) -> Response:
    """An attachment's bytes for whoever may read the conversation (DHIS2's checks and texts)."""
    resource = attachments.for_download(
        ctx.session,
        actor=ctx.user,
        conversation_uid=conversation_uid,
        message_uid=message_uid,
        file_uid=file_uid,
    )
    headers = {
        **DOWNLOAD_HEADERS,
        "Content-Disposition": content_disposition(resource.name),
        "Cache-Control": "no-cache, private",
    }
    return Response(resource.content, media_type=resource.content_type, headers=headers)
