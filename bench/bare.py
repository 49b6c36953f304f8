"""The baseline for bench/api.py: a bare FastAPI endpoint that validates a message and answers 201."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import JSONResponse

app = FastAPI()


class Ref(BaseModel):
    """A reference by id."""

    id: str


class Draft(BaseModel):
    """The same body Herald receives."""

    subject: str
    text: str = ""
    users: list[Ref] = []


@app.post("/api/messageConversations")
async def create(draft: Draft) -> JSONResponse:
    """Validate and answer 201 like Herald does, without persisting anything."""
    return JSONResponse(
        {"httpStatus": "Created", "httpStatusCode": 201, "status": "OK", "message": "Message conversation created"},
        status_code=201,
        headers={"Location": "http://127.0.0.1/api/messageConversations/AbCdEfGhIjK"},
    )
