"""Message attachments: uploads stored as file resources, and the checks of a download (dhis2-behaviour.md §1.16).

An upload stays unassigned until its uploader links it to a message (messaging.conversations
.link_attachments). A download is allowed to whoever may read the conversation; attachments of
internal messages only to ticket managers (DECISIONS #9).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, undefer

from messaging import conversations
from messaging.directory import Principal, is_ticket_manager
from messaging.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from messaging.models import FileResource, Message, User

# A fixed limit, apart from HERALD_MAX_BODY_BYTES: attachments are files, not API bodies.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MESSAGE_ATTACHMENT = "MESSAGE_ATTACHMENT"
# DHIS2's FileResourceDomain values; Herald stores only message attachments.
DOMAINS = ("DATA_VALUE", "PUSH_ANALYSIS", "DOCUMENT", "MESSAGE_ATTACHMENT", "USER_AVATAR", "ORG_UNIT", "JOB_DATA", "ICON")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_NAME_CHARS = 255
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def check_domain(domain: str | None) -> None:
    """Accept MESSAGE_ATTACHMENT (also when omitted); 400 for unknown domains, 409 for other real ones."""
    if domain is None or domain == MESSAGE_ATTACHMENT:
        return
    if domain not in DOMAINS:
        raise BadRequest(f"Value '{domain}' is not valid for parameter domain. Valid values are: [{', '.join(DOMAINS)}]")
    raise Conflict(f"Herald stores only {MESSAGE_ATTACHMENT} file resources, not {domain}.")


def clean_name(filename: str | None) -> str:
    """The file's own name: no folders (browsers may send C:\\fakepath\\x), no control characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:MAX_NAME_CHARS] or "file"


def clean_content_type(content_type: str | None) -> str:
    """The declared media type without parameters, when it is one; else application/octet-stream."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else DEFAULT_CONTENT_TYPE


@dataclass(frozen=True)
class UploadLimits:
    """How much one user may hold in uploads not attached to any message."""

    max_count: int = 20
    max_bytes: int = 50 * 1024 * 1024


def _size(size_bytes: int) -> str:
    if size_bytes >= 1024 * 1024:
        return f"{size_bytes / (1024 * 1024):.1f} MiB"
    return f"{size_bytes / 1024:.1f} KiB"


def check_upload_quota(session: Session, owner: Principal, size_bytes: int, limits: UploadLimits) -> None:
    """Conflict when one more upload of this size would exceed the owner's unattached quota."""
    # Uploads of one user take turns (the row lock; SQLite's writes are serial anyway).
    session.execute(select(User.id).where(User.id == owner.id).with_for_update())
    count, held_bytes = session.execute(
        select(func.count(), func.coalesce(func.sum(FileResource.content_length), 0)).where(
            FileResource.created_by_id == owner.id, FileResource.assigned.is_(False)
        )
    ).one()
    if count + 1 > limits.max_count:
        raise Conflict(
            f"Too many uploads not attached to a message: {count} of at most {limits.max_count}. "
            "Attach them to a message, or wait until unattached uploads expire."
        )
    if held_bytes + size_bytes > limits.max_bytes:
        raise Conflict(
            f"Uploads not attached to a message would hold {_size(held_bytes + size_bytes)}, more than the "
            f"limit of {_size(limits.max_bytes)}. Attach them to a message, or wait until unattached uploads expire."
        )


def store_upload(
    session: Session,
    *,
    owner: Principal,
    filename: str | None,
    content_type: str | None,
    data: bytes,
    limits: UploadLimits | None = None,
) -> FileResource:
    """Stage an unassigned message attachment owned by the uploader, within its quota. No commit."""
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise PayloadTooLarge(f"The file is larger than the limit of {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB.")
    check_upload_quota(session, owner, len(data), limits or UploadLimits())
    resource = FileResource(
        name=clean_name(filename),
        content_type=clean_content_type(content_type),
        content_length=len(data),
        content_md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        domain=MESSAGE_ATTACHMENT,
        content=data,
        assigned=False,
        created_by_id=owner.id,
    )
    session.add(resource)
    session.flush()
    return resource


def uploaded_by(session: Session, actor: Principal, uid: str) -> FileResource:
    """A file resource the actor uploaded (ALL sees every one); 404 otherwise, so ids leak nothing."""
    resource = session.scalar(select(FileResource).where(FileResource.uid == uid))
    if resource is None or not (actor.is_super or resource.created_by_id == actor.id):
        raise NotFound(f"FileResource with id {uid} could not be found.", error_code="E1005")
    return resource


def for_download(
    session: Session, *, actor: Principal, conversation_uid: str, message_uid: str, file_uid: str
) -> FileResource:
    """The attachment with its bytes, after DHIS2's checks in DHIS2's order and texts."""
    conversation = conversations.get_by_uid(session, conversation_uid)
    if conversation is None:
        raise NotFound(f"No message conversation with uid '{conversation_uid}'")
    if not conversations.can_read(session, actor, conversation):
        raise Forbidden("Not authorized to access this conversation.")
    message = session.scalar(
        select(Message).where(Message.uid == message_uid, Message.conversation_id == conversation.id)
    )
    if message is None:
        # DHIS2's text lacks the closing quote.
        raise NotFound(f"No message with uid '{message_uid}' in messageConversation '{conversation_uid}")
    if message.internal and not is_ticket_manager(session, actor):
        raise Conflict("Not authorized to access this message")
    resource = session.scalar(
        select(FileResource)
        .options(undefer(FileResource.content))
        .where(FileResource.uid == file_uid, FileResource.message_id == message.id)
    )
    if resource is None:
        raise NotFound(f"No messageattachment found with id '{file_uid}'")
    if resource.domain != MESSAGE_ATTACHMENT:
        raise Conflict("Invalid messageattachment.")
    return resource


def delete_unattached(session: Session, *, created_before: datetime, batch: int = 500) -> tuple[int, int]:
    """Stage the deletion of up to `batch` uploads never attached and created before the cut-off.

    Returns (rows, bytes) removed; the bytes live in the rows. No commit.
    """
    rows = session.execute(
        select(FileResource.id, FileResource.content_length)
        .where(FileResource.assigned.is_(False), FileResource.message_id.is_(None), FileResource.created < created_before)
        .order_by(FileResource.created)
        .limit(batch)
    ).all()
    if not rows:
        return 0, 0
    session.execute(
        delete(FileResource).where(FileResource.id.in_([row.id for row in rows]), FileResource.assigned.is_(False))
    )
    return len(rows), sum(int(row.content_length or 0) for row in rows)
