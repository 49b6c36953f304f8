"""The typed request bodies: the pydantic models that parse them are the ones the OpenAPI document shows.

Each model names the DHIS2 message a wrong value answers with (`MESSAGES`, keyed by the top-level
property, or `property.error_type` where one property has several), so a translated pydantic error
reads as the hand-written checks did. Types are strict: DHIS2's Jackson binding does not turn 5 into
"5" for a subject, and neither does Herald.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, RootModel, StrictStr

from messaging.conversations import RecipientRefs

INT64_MAX = 2**63 - 1
MAX_SUBJECT = 255


def _none_as_empty(value: Any) -> Any:
    # DHIS2 clients send `"users": null` for "nobody"; the model keeps one shape, a list.
    return [] if value is None else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    return value


def _loose(shape: dict[str, Any]) -> Any:
    """A property read as any JSON value (checked later, or refused like a wrong value), documented as `shape`."""

    def document(schema: dict[str, Any]) -> None:
        schema.pop("default", None)  # null is no value of `shape`, and the document must validate
        schema.update(shape)

    return Field(default=None, json_schema_extra=document)


class WireModel(BaseModel):
    """A request body. `MESSAGES` maps a property (or `property.error_type`) to the DHIS2 message."""

    model_config = ConfigDict(extra="ignore")
    MESSAGES: ClassVar[dict[str, str]] = {}
    NOT_OBJECT: ClassVar[str] = "Request body must be a JSON object."


class Ref(WireModel):
    """A reference to a DHIS2 object by id."""

    id: StrictStr = Field(examples=["OYLGMiazHtW"])


Refs = Annotated[list[Ref], BeforeValidator(_none_as_empty)]


def _refs_message(key: str) -> str:
    return f"Property `{key}` must be a list of objects with an `id`."


class Recipients(WireModel):
    """Recipients to add to a conversation (JSON, or XML `<message>` with `<users><user id=".."/></users>`)."""

    model_config = ConfigDict(json_schema_extra={"xml": {"name": "message"}})
    MESSAGES: ClassVar[dict[str, str]] = {key: _refs_message(key) for key in ("users", "userGroups", "organisationUnits")}
    users: Refs = []
    userGroups: Refs = []
    organisationUnits: Refs = []

    @property
    def refs(self) -> RecipientRefs:
        """The references as the domain takes them."""
        return RecipientRefs(
            users=[r.id for r in self.users],
            groups=[r.id for r in self.userGroups],
            org_units=[r.id for r in self.organisationUnits],
        )


class MessageDraft(Recipients):
    """A new conversation (DHIS2's `message`); recipients as references, attachments as ids or references."""

    MESSAGES: ClassVar[dict[str, str]] = {
        **Recipients.MESSAGES,
        "subject": "Missing required property `subject`.",
        "subject.string_too_long": f"Property `subject` is longer than {MAX_SUBJECT} characters.",
        "text": "Property `text` must be a string.",
        "attachments": _refs_message("attachments"),
    }
    subject: Annotated[StrictStr, Field(max_length=MAX_SUBJECT, examples=["Stock of vaccines"]), AfterValidator(_not_blank)]
    text: StrictStr | None = Field(default=None, examples=["Please confirm this month's stock."])
    # The doc sends strings, the official app objects (DECISIONS #10).
    attachments: Annotated[list[StrictStr | Ref], BeforeValidator(_none_as_empty)] = []

    @property
    def attachment_ids(self) -> list[str]:
        """The attachments' file-resource ids, whichever form they came in."""
        return [a if isinstance(a, str) else a.id for a in self.attachments]


class UidArray(RootModel[list[StrictStr]]):
    """The ids of the conversations to mark (read, unread, follow-up)."""

    MESSAGES: ClassVar[dict[str, str]] = {}
    NOT_OBJECT: ClassVar[str] = "Request body must be a JSON array of ids."


class Login(WireModel):
    """The app platform's login body; a missing or non-text credential is refused like a wrong one (401)."""

    NOT_OBJECT: ClassVar[str] = "Request body must be a JSON object with username and password."
    username: Any = _loose({"type": "string"})
    password: Any = _loose({"type": "string", "format": "password"})


class FeedbackGroup(RootModel[StrictStr | Ref]):
    """The feedback-recipients group: its id as text, as a JSON string, or as `{"id": ...}`."""

    MESSAGES: ClassVar[dict[str, str]] = {}
    NOT_OBJECT: ClassVar[str] = "Request body must be a user group id, as text, a JSON string or an object with an `id`."

    @property
    def uid(self) -> str:
        """The group id, whichever form it came in."""
        return self.root if isinstance(self.root, str) else self.root.id


DeliveryId = Annotated[int, Field(strict=True, gt=0, le=INT64_MAX)]
IDS_MESSAGES = {
    "ids": "'ids' must be a list of delivery ids (numbers).",
    "ids.greater_than": "Value '{input}' is not valid for a delivery id: expected a positive 64-bit integer.",
    "ids.less_than_equal": "Value '{input}' is not valid for a delivery id: expected a positive 64-bit integer.",
}


class DeliveryAction(WireModel):
    """A retry or discard: `ids` (a selection) or `query` (everything matching it), exactly one."""

    model_config = ConfigDict(extra="forbid")
    MESSAGES: ClassVar[dict[str, str]] = {
        **IDS_MESSAGES,
        "query": "'query' must be an object of search keys.",
        "*.extra_forbidden": "Unknown key '{key}': expected 'ids' or 'query'.",
    }
    NOT_OBJECT: ClassVar[str] = "Expected a JSON object with 'ids' (a selection) or 'query' (everything matching it)."
    ids: list[DeliveryId] | None = None
    query: dict[str, Any] | None = None


class Requeue(WireModel):
    """A requeue of dead (or `statuses`) deliveries: `ids`, or `all: true`."""

    MESSAGES: ClassVar[dict[str, str]] = {
        **IDS_MESSAGES,
        "statuses": "'statuses' must be a list of FAILED, DEAD and UNKNOWN.",
    }
    NOT_OBJECT: ClassVar[str] = "Expected a JSON object with 'ids' or 'all'."
    ids: list[DeliveryId] | None = None
    all: Any = _loose({"type": "boolean"})  # only `true` selects everything
    statuses: list[StrictStr] = ["DEAD"]


class MetadataObject(WireModel):
    """One object of a metadata import. DHIS2 tolerates properties it does not know, so does Herald.

    A known property of the wrong JSON type is not refused here: DHIS2 reports it per object in the
    import report (messaging.metadata_types, E4070), which is what a client reads.
    """

    model_config = ConfigDict(extra="allow")
    id: Any = _loose({"type": "string"})
    code: Any = _loose({"type": "string"})


class OrganisationUnitIn(MetadataObject):
    """An organisation unit: name, shortName and an optional parent reference."""

    name: Any = _loose({"type": "string"})
    shortName: Any = _loose({"type": "string"})
    parent: Any = _loose({"type": "object", "properties": {"id": {"type": "string"}}})


class UserRoleIn(MetadataObject):
    """A user role and its authorities."""

    name: Any = _loose({"type": "string"})
    authorities: Any = _loose({"type": "array", "items": {"type": "string"}})


class UserIn(MetadataObject):
    """A user (DHIS2 2.41 flat form, or with `userCredentials`)."""

    username: Any = _loose({"type": "string"})
    password: Any = _loose({"type": "string", "format": "password"})
    firstName: Any = _loose({"type": "string"})
    surname: Any = _loose({"type": "string"})
    email: Any = _loose({"type": "string"})
    phoneNumber: Any = _loose({"type": "string"})
    disabled: Any = _loose({"type": "boolean"})


class UserGroupIn(MetadataObject):
    """A user group and its members."""

    name: Any = _loose({"type": "string"})


def _objects_message(key: str) -> str:
    return f"Metadata property `{key}` must be a list of objects."


class MetadataImport(WireModel):
    """DHIS2 metadata: lists of objects per type; other object types are ignored, as DHIS2 skips what it lacks."""

    model_config = ConfigDict(extra="allow")
    MESSAGES: ClassVar[dict[str, str]] = {
        key: _objects_message(key) for key in ("organisationUnits", "userRoles", "users", "userGroups")
    }
    NOT_OBJECT: ClassVar[str] = "Metadata payload must be a JSON object."
    organisationUnits: list[OrganisationUnitIn] = []
    userRoles: list[UserRoleIn] = []
    users: list[UserIn] = []
    userGroups: list[UserGroupIn] = []

    def payload(self) -> dict[str, Any]:
        """The import as plain data for messaging.metadata (only what the client sent)."""
        return self.model_dump(exclude_unset=True)


class ResultsEnvelope(WireModel):
    """`{"validationResults": [...]}`: each entry is checked, and counted, by the import itself."""

    validationResults: list[Any]


class ValidationResults(RootModel[list[Any] | ResultsEnvelope]):
    """Validation results: a JSON list, or `{"validationResults": [...]}`."""

    MESSAGES: ClassVar[dict[str, str]] = {}
    NOT_OBJECT: ClassVar[str] = 'Expected a list of validation results or {"validationResults": [...]}.'

    @property
    def entries(self) -> list[Any]:
        """The entries, whichever form they came in."""
        return self.root if isinstance(self.root, list) else self.root.validationResults


class WebMessage(BaseModel):
    """DHIS2's answer to every error (and to some successes)."""

    httpStatus: str = Field(examples=["Bad Request"])
    httpStatusCode: int = Field(examples=[400])
    status: str = Field(examples=["ERROR"])
    message: str
