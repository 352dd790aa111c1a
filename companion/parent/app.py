"""The parent dashboard: a small Starlette app the robot serves on the home network.

Server-rendered pages (Jinja2, no JavaScript, no external assets) that work on a phone.
Every route but the login page needs a session; every form carries a CSRF token. It uses
its own connection to the memory database; the voice loop reads the settings it writes at
the start of each turn.
"""

from __future__ import annotations

import datetime as dt
import inspect
import secrets
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from companion.config import CompanionConfig
from companion.errors import ConfigError
from companion.memory.store import MemoryStore
from companion.memory.worker import MemoryWorker
from companion.parent import auth
from companion.parent import settings as ps
from companion.persona import available_personas

COOKIE = "companion_session"
LOGIN_COOKIE = "companion_login_csrf"
ALERT_KINDS = ("disclosure", "self_harm", "stranger_contact")

_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
_env.filters["when"] = lambda ts: dt.datetime.fromtimestamp(ts).strftime("%a %d %b %H:%M")
_env.filters["minutes"] = lambda s: f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def create_app(memory: MemoryStore | MemoryWorker, config: CompanionConfig, *,
               limiter: auth.LoginLimiter | None = None, secure_cookies: bool = False) -> Starlette:
    """The dashboard over ``memory``. Every handler that touches the database runs on the memory worker
    (one thread, one connection, in order with the voice loop's writes when they share it), never on the
    event loop: an erase ends in a VACUUM, and audio shares this loop under ``companion run --parent-port``."""
    db = memory if isinstance(memory, MemoryWorker) else MemoryWorker(memory)
    store = db.store
    sessions = auth.Sessions()
    limiter = limiter or auth.LoginLimiter()

    def page(name: str, request: Request, status: int = 200, **context) -> HTMLResponse:
        session = request.state.session if hasattr(request.state, "session") else None
        html = _env.get_template(name).render(csrf=session.csrf if session else "", children=store.children(),
                                              **context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure_cookies,
                            path="/")

    def protected(handler):
        """No session: pages redirect to the login page, API routes and form posts answer 401.
        Posts without the session's CSRF token answer 403."""
        async def wrapped(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE))
            if session is None:
                if request.method == "GET" and not request.url.path.startswith("/api/"):
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"error": "PARENT_AUTH_REQUIRED"}, status_code=401)
            request.state.session = session
            if request.method == "POST":
                form = await request.form()
                if not auth.same(form.get("csrf"), session.csrf):
                    return JSONResponse({"error": "PARENT_CSRF_INVALID"}, status_code=403)
                request.state.form = form
            if inspect.iscoroutinefunction(handler):
                return await handler(request)
            return await db.call(lambda _store: handler(request))
        return wrapped

    # -- login ---------------------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = await db.call(lambda _store: page("login.html", request, login_csrf=token,
                                                     needs_password=not auth.has_password(store)))
        set_cookie(response, LOGIN_COOKIE, token, max_age=1800)
        return response

    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        form = await request.form()
        if not auth.same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            return JSONResponse({"error": "PARENT_CSRF_INVALID"}, status_code=403)
        if not limiter.allowed(client):
            return await db.call(lambda _store: page("login.html", request, status=429, login_csrf=form.get("csrf"),
                                                     error="Too many wrong passwords. Wait a minute and try again."))
        ok = await db.call(auth.check_password, str(form.get("password", "")))
        if not ok:
            limiter.failed(client)
            return await db.call(lambda _store: page("login.html", request, status=401, login_csrf=form.get("csrf"),
                                                     error="Wrong password.", needs_password=not auth.has_password(store)))
        limiter.succeeded(client)
        token, _session = sessions.create()
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, COOKIE, token)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(request: Request) -> Response:
        sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages ---------------------------------------------------------------------------------
    def overview_data() -> dict:
        settings = ps.load(store)
        today = ps.start_of_today(dt.datetime.now())
        kids = [{"name": c, "talk_s": store.talk_seconds(c, today), "limit_s": settings.limit_s(c),
                 "alerts": sum(1 for a in store.alerts(c) if not a["seen"] and a["category"] != "wellbeing")} for c in store.children()]
        return {"kids": kids, "open_alerts": [a for a in store.all_alerts() if not a["seen"]],
                "quiet_now": settings.quiet_now(dt.datetime.now()), "settings": settings}

    def overview(request: Request) -> Response:
        return page("overview.html", request, **overview_data())

    def api_overview(request: Request) -> Response:
        data = overview_data()
        data["settings"] = data["settings"].to_json()
        return JSONResponse(data)

    def alerts(request: Request) -> Response:
        return page("alerts.html", request, alerts=store.all_alerts(), important=ALERT_KINDS)

    def alert_seen(request: Request) -> Response:
        store.mark_alert_seen(int(request.path_params["alert_id"]))
        return RedirectResponse("/alerts", status_code=303)

    def known_child(request: Request) -> str | None:
        child = request.path_params["child"]
        return child if child in store.children() else None

    def transcripts(request: Request) -> Response:
        child = known_child(request)
        if child is None:
            return page("message.html", request, status=404, message="No child by that name.")
        query = request.query_params.get("q", "")[:200]
        return page("transcripts.html", request, child=child, query=query, turns=store.turns(child, query=query))

    def delete_turn(request: Request) -> Response:
        child = known_child(request)
        if child is not None:
            store.delete_turn(child, int(request.path_params["turn_id"]))
        return RedirectResponse(f"/children/{child}/transcripts", status_code=303)

    def memory(request: Request) -> Response:
        child = known_child(request)
        if child is None:
            return page("message.html", request, status=404, message="No memory of a child by that name.")
        return page("memory.html", request, child=child, facts=store.fact_rows(child))

    def fact(request: Request) -> Response:
        child = known_child(request)
        if child is not None:
            fact_id = int(request.path_params["fact_id"])
            if request.state.form.get("action") == "delete":
                store.delete_fact(child, fact_id)
            else:
                store.update_fact(child, fact_id, str(request.state.form.get("value", ""))[:200])
        return RedirectResponse(f"/children/{child}/memory", status_code=303)

    def erase(request: Request) -> Response:
        child = known_child(request)
        if child is None or request.state.form.get("confirm") != child:
            return page("message.html", request, status=400,
                        message="Type the child's name to confirm erasing everything about them.")
        store.erase_child(child)
        return page("message.html", request, message=f"Everything about {child} is erased.")

    def settings_page_for(request: Request, settings: ps.ParentSettings, status: int = 200, **extra) -> Response:
        default = config.memory.retention_days
        return page("settings.html", request, status=status, settings=settings, personas=available_personas(),
                    default_retention=ps.days_text(default),
                    retention_in_force=ps.days_text(settings.retention_in_force(default)), **extra)

    def settings_page(request: Request) -> Response:
        return settings_page_for(request, ps.load(store))

    def save_settings(request: Request) -> Response:
        form = request.state.form
        try:
            limits = {}
            for child in store.children():
                raw = str(form.get(f"limit_{child}", "")).strip()
                if raw:
                    limits[child] = int(raw)
            new = ps.ParentSettings(
                quiet_start=str(form.get("quiet_start", "")).strip(), quiet_end=str(form.get("quiet_end", "")).strip(),
                daily_limit_min=limits,
                deny_topics=tuple(t.strip() for t in str(form.get("deny_topics", "")).split(",") if t.strip()),
                retention_days=ps.parse_retention(str(form.get("retention_days", ""))),
                volume=int(form.get("volume") or 100),
                persona=str(form.get("persona", "")).strip())
            if new.persona and new.persona not in available_personas():
                raise ConfigError(f"no persona {new.persona!r}", code="PARENT_SETTING_INVALID")
        except (ValueError, ConfigError) as err:
            return settings_page_for(request, ps.load(store), status=400, error=str(err))
        ps.save(store, new)
        store.purge_expired(new.retention_in_force(config.memory.retention_days))
        return settings_page_for(request, new, saved=True)

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", protected(logout), methods=["POST"]),
        Route("/", protected(overview), methods=["GET"]),
        Route("/api/overview", protected(api_overview), methods=["GET"]),
        Route("/alerts", protected(alerts), methods=["GET"]),
        Route("/alerts/{alert_id:int}/seen", protected(alert_seen), methods=["POST"]),
        Route("/children/{child}/transcripts", protected(transcripts), methods=["GET"]),
        Route("/children/{child}/turns/{turn_id:int}/delete", protected(delete_turn), methods=["POST"]),
        Route("/children/{child}/memory", protected(memory), methods=["GET"]),
        Route("/children/{child}/facts/{fact_id:int}", protected(fact), methods=["POST"]),
        Route("/children/{child}/erase", protected(erase), methods=["POST"]),
        Route("/settings", protected(settings_page), methods=["GET"]),
        Route("/settings", protected(save_settings), methods=["POST"]),
    ]
    return Starlette(routes=routes)

