"""Browser login and logout the way the DHIS2 app platform does them (messaging-app.md §3).

`GET /api/loginConfig` answering 200 makes the app log in with JSON at `/api/auth/login`; the
form post to `/dhis-web-commons-security/login.action` is the older flow. Both start a session
(api/sessions.py). A 401 here never carries a Basic challenge: a browser would open its own
credential dialog.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api import sessions
from api.bodies import LoginBody
from api.deps import CtxDep, SessionClosingRoute, SessionDep, state_of
from api.queries import UnlockParams
from api.render import respond, respond_message
from api.routers.apps import home_path, root_path
from api.routers.system import DHIS2_VERSION
from messaging import directory, login_throttle
from messaging.errors import BadRequest, Forbidden

router = APIRouter(tags=["auth"], route_class=SessionClosingRoute)
BAD_CREDENTIALS = "Bad credentials"  # one text for unknown users, wrong passwords and disabled users


@router.get("/api/loginConfig")
def login_config(request: Request, session: SessionDep) -> Response:
    """What a login screen needs before anyone is logged in (public)."""
    settings = state_of(request).settings
    return respond(
        request,
        {
            "applicationTitle": directory.get_system_setting(session, "applicationTitle"),
            "applicationDescription": "",
            "uiLocale": directory.get_system_setting(session, "keyUiLocale") or "en",
            "apiVersion": DHIS2_VERSION,
            "emailConfigured": settings.smtp_url is not None,
            "selfRegistrationEnabled": False,
            "selfRegistrationNoRecaptcha": False,
            "allowAccountRecovery": False,
            "useCustomLogoFront": False,
            "useCustomLogoBanner": False,
            "loginPageLayout": "DEFAULT",
            "oidcProviders": [],
        },
        xml_root="loginConfig",
    )


def _log_in(request: Request, session: Session, username: Any, password: Any) -> str | None:
    """Check the credentials and stage a fresh session; its token, or None when refused."""
    state = state_of(request)
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return None
    address = request.client.host if request.client else None
    principal = state.authenticator.check_password(session, username, password, address=address)
    if principal is None:
        return None
    token = sessions.start_session(
        session,
        principal.id,
        ttl_s=state.settings.session_ttl_s,
        replacing=request.cookies.get(sessions.SESSION_COOKIE),
    )
    session.commit()
    return token


def _refused(request: Request) -> Response:
    return respond_message(request, 401, BAD_CREDENTIALS)


@router.post("/api/auth/login")
def login(request: Request, session: SessionDep, body: LoginBody) -> Response:
    """JSON `{"username","password"}` in; 200 `{"loginStatus":"SUCCESS",...}` and a session cookie out."""
    sessions.check_same_origin(request, state_of(request).settings)  # no logging a victim into our account
    token = _log_in(request, session, body.username, body.password)
    if token is None:
        return _refused(request)
    response = respond(request, {"loginStatus": "SUCCESS", "redirectUrl": home_path(request)}, xml_root="loginResponse")
    sessions.set_session_cookie(response, request, token)
    return response


@router.post("/dhis-web-commons-security/login.action")
def login_form(
    request: Request,
    session: SessionDep,
    j_username: Annotated[str, Form()] = "",
    j_password: Annotated[str, Form()] = "",
) -> Response:
    """The form login (`j_username`, `j_password`): 302 to / with the session cookie."""
    sessions.check_same_origin(request, state_of(request).settings)
    token = _log_in(request, session, j_username, j_password)
    if token is None:
        return _refused(request)
    response = RedirectResponse(root_path(request) + "/", status_code=302)
    sessions.set_session_cookie(response, request, token)
    return response


def _log_out(request: Request, session: Session) -> Response:
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if token:
        sessions.end_session(session, token)
        session.commit()
    response = RedirectResponse(root_path(request) + "/", status_code=302)
    sessions.clear_session_cookie(response, request)
    return response


@router.get("/dhis-web-commons-security/logout.action")
def logout_link(request: Request, session: SessionDep) -> Response:
    """The header bar's logout link: end the session everywhere, drop the cookie, go to /."""
    return _log_out(request, session)


@router.post("/api/auth/logout")
def logout(request: Request, session: SessionDep) -> Response:
    """End the session (CSRF-checked like any change made with the cookie) and redirect to /."""
    if request.cookies.get(sessions.SESSION_COOKIE):
        sessions.check_csrf(request, state_of(request).settings)
    return _log_out(request, session)


@router.post("/api/auth/unlock")
def unlock(ctx: CtxDep, query: UnlockParams) -> Response:
    """Forget the failed logins of a username and/or a client address (ALL only): the lock lifts at once."""
    if not ctx.user.is_super:
        raise Forbidden("Access is denied, requires one Authority from [ALL]")
    if not query.username and not query.address:
        raise BadRequest("Name the username or the address to unlock (?username=... or ?address=...).")
    cleared = login_throttle.unlock(ctx.session, username=query.username, address=query.address)
    ctx.session.commit()
    return respond_message(ctx.request, 200, f"Unlocked; {cleared} failed logins forgotten.")
