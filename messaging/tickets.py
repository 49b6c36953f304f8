"""Feedback tickets and the ticket tools: status, priority and assignee (dhis2-behaviour.md §1.5, §1.7-1.10).

Status, priority and assignee work on every conversation type (DECISIONS #19). Access is the
conversation's: a participant, `ALL`, or a ticket manager on a TICKET. Nobody is notified of
these changes (DECISIONS #15). Services stage; the edge commits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from messaging import conversations
from messaging.directory import Principal, feedback_group, in_feedback_group, user_by_uid
from messaging.errors import BadRequest, Conflict, HeraldError
from messaging.models import Conversation, ConversationPriority, ConversationStatus, MessageType, User

MAX_SUBJECT = 255


class BareAnswer(HeraldError):
    """An error DHIS2 answers as a bare `{"message": ...}` object (a RootNode), not a WebMessage."""


class NoSuchConversation(BareAnswer):
    """404: the conversation of a status, priority or assign call does not exist."""

    status = 404

    def __init__(self) -> None:
        super().__init__("No MessageConversation found for the given ID.")


class NoSuchAssignee(BareAnswer):
    """404: `userId` is missing or names no user."""

    status = 404

    def __init__(self) -> None:
        super().__init__("Could not find user to assign")


class NotAFeedbackRecipient(BareAnswer):
    """409: a ticket may only be assigned to a member of the feedback-recipients group."""

    status = 409

    def __init__(self) -> None:
        super().__init__("User provided is not a member of the system's feedback recipient group")


def _enum_value(valid: list[str], name: str, value: str | None) -> str:
    if value is None:
        java_type = name[0].upper() + name[1:]  # messageConversationStatus -> MessageConversationStatus
        raise BadRequest(f"Required request parameter '{name}' for method parameter type {java_type} is not present")
    if value not in valid:
        raise BadRequest(f"Value '{value}' is not valid for parameter {name}. Valid values are: [{', '.join(valid)}]")
    return value


def parse_status(value: str | None) -> ConversationStatus:
    """A `messageConversationStatus` parameter, or 400 with Spring's text."""
    return ConversationStatus(_enum_value([s.value for s in ConversationStatus], "messageConversationStatus", value))


def parse_priority(value: str | None) -> ConversationPriority:
    """A `messageConversationPriority` parameter, or 400 with Spring's text."""
    valid = [p.value for p in ConversationPriority]
    return ConversationPriority(_enum_value(valid, "messageConversationPriority", value))


def send_feedback(
    session: Session, *, sender: Principal, subject: str | None, text: str, meta_data: str | None = None
) -> conversations.Started:
    """Stage a TICKET (status OPEN) to the feedback-recipients group as configured now. No commit.

    Without a configured group the sender is the only participant, as in DHIS2.
    """
    if subject is None:
        raise BadRequest("Required request parameter 'subject' for method parameter type String is not present")
    if len(subject) > MAX_SUBJECT:
        raise Conflict(f"Property `subject` is longer than {MAX_SUBJECT} characters.")
    group = feedback_group(session)
    return conversations.start_conversation(
        session,
        sender=sender,
        subject=subject,
        text=text,
        resolved=conversations.Resolved(user_ids=[], group_ids=[group.id] if group else [], org_unit_ids=[]),
        message_type=MessageType.TICKET,
        status=ConversationStatus.OPEN,
        meta_data=meta_data,
    )


def _accessible(session: Session, actor: Principal, uid: str, refusal: str) -> Conversation:
    conversation = conversations.get_by_uid(session, uid)
    if conversation is None:
        raise NoSuchConversation()
    conversations.check_access(session, actor, [conversation], refusal)
    return conversation


def set_status(session: Session, *, actor: Principal, conversation_uid: str, status: ConversationStatus) -> Conversation:
    """Stage a new status. No commit."""
    conversation = _accessible(session, actor, conversation_uid, "Not authorized to change status in this conversation.")
    conversation.status = status.value
    return conversation


def set_priority(
    session: Session, *, actor: Principal, conversation_uid: str, priority: ConversationPriority
) -> Conversation:
    """Stage a new priority. No commit."""
    conversation = _accessible(
        session, actor, conversation_uid, "Not authorized to change priority in this conversation."
    )
    conversation.priority = priority.value
    return conversation


def assign(session: Session, *, actor: Principal, conversation_uid: str, user_uid: str | None) -> User:
    """Stage the assignee and return it. Tickets only go to feedback recipients. No commit.

    The assignee does not become a participant (the app adds them first where it wants that).
    """
    conversation = _accessible(
        session, actor, conversation_uid, "Not authorized to assign a user to this conversation."
    )
    assignee = user_by_uid(session, user_uid) if user_uid else None
    if assignee is None:
        raise NoSuchAssignee()
    if conversation.message_type == MessageType.TICKET and not in_feedback_group(session, assignee.id):
        raise NotAFeedbackRecipient()
    conversation.assignee_id = assignee.id
    return assignee


def unassign(session: Session, *, actor: Principal, conversation_uid: str) -> Conversation:
    """Stage the removal of the assignee. No commit."""
    conversation = _accessible(
        session, actor, conversation_uid, "Not authorized to remove the assigned user to this conversation."
    )
    conversation.assignee_id = None
    return conversation
