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
from starlette.formparsers import MultiPartParser
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
#: After a year the dashboard asks for the child's voice again: children's voices change as they grow.
REENROL_AFTER_S = 365 * 86400
#: Largest enrolment upload (a few phone recordings of ~20 s in all are far smaller).
MAX_UPLOAD = 32 * 1024 * 1024
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

    def protected(handler, form: bool = True):
        """No session: pages redirect to the login page, API routes and form posts answer 401.
        Posts without the session's CSRF token answer 403 (``form`` False: an upload, whose body the
        handler reads itself; its token comes in the query string)."""
        async def wrapped(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE))
            if session is None:
                if request.method == "GET" and not request.url.path.startswith("/api/"):
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"error": "PARENT_AUTH_REQUIRED"}, status_code=401)
            request.state.session = session
            if request.method == "POST":
                fields = await request.form() if form else request.query_params
                if not auth.same(fields.get("csrf"), session.csrf):
                    return JSONResponse({"error": "PARENT_CSRF_INVALID"}, status_code=403)
                request.state.form = fields
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

    def memory(request: Request, status: int = 200, **voice_result) -> Response:
        child = known_child(request)
        if child is None:
            return page("message.html", request, status=404, message="No memory of a child by that name.")
        voice = next((v for v in store.voiceprint_info() if v["child"] == child), None)
        stale = voice is not None and dt.datetime.now().timestamp() - voice["enrolled_at"] > REENROL_AFTER_S
        from companion.speaker import listening as talk

        asked = talk.pending_request(store)
        until = asked[1] if asked is not None and asked[0] == child else None
        return page("memory.html", request, status=status, child=child, facts=store.fact_rows(child), voice=voice,
                    voice_consent=ps.load(store).voice_id, voice_stale=stale, listening=until, **voice_result)

    def listen_voice(request: Request) -> Response:
        """The robot learns the child's voice by talking with them (speaker/listening.py)."""
        from companion.speaker import listening as talk
        from companion.speaker.enrol import SpeakerError

        child = known_child(request)
        if child is None:
            return page("message.html", request, status=404, message="No child by that name.")
        try:
            talk.request(store, child)
        except SpeakerError as err:
            return memory(request, status=400, voice_message=err.message, voice_error=True)
        return memory(request, voice_message=f"Now ask {child} to say hello to the robot: it will chat with them "
                                             f"for about a minute and learn their voice.")

    def forget_voice(request: Request) -> Response:
        child = known_child(request)
        if child is not None:
            store.delete_voiceprint(child)
        return RedirectResponse(f"/children/{child}/memory", status_code=303)

    async def enrol_voice(request: Request) -> Response:
        """Recordings of the child (a phone records them in the form) -> the voiceprint. The audio is parsed
        in memory, never spooled to a temporary file, and dropped once the vector is made."""
        child = request.path_params["child"]
        try:
            recordings = await _read_recordings(request)
        except ConfigError as err:
            message = err.message
            return await db.call(lambda _s: memory(request, status=400, voice_message=message, voice_error=True))

        def make(_store) -> Response:
            from companion.speaker.enrol import SpeakerError, enrol

            if known_child(request) is None:
                return page("message.html", request, status=404, message="No child by that name.")
            try:
                result = enrol(store, speaker_encoder(), child, recordings)
            except SpeakerError as err:
                return memory(request, status=400, voice_message=err.message, voice_error=True)
            note = f" Note: {result.note}." if result.note else ""
            return memory(request, voice_message=f"Enrolled {child}'s voice from {result.speech_s} s of speech.{note}")

        return await db.call(make)

    encoder_box: list = []

    def speaker_encoder():
        """The speaker encoder, loaded on the first enrolment (5-12 MB)."""
        if not encoder_box:
            from companion.models.cache import ModelCache
            from companion.paths import models_cache_dir
            from companion.speaker.encoder import open_speaker_encoder

            encoder_box.append(open_speaker_encoder(ModelCache(models_cache_dir()), config.speakers.models))
        return encoder_box[0]

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
                persona=str(form.get("persona", "")).strip(), voice_id=form.get("voice_id") == "on")
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
        Route("/children/{child}/voice/forget", protected(forget_voice), methods=["POST"]),
        Route("/children/{child}/voice/listen", protected(listen_voice), methods=["POST"]),
        Route("/children/{child}/voice/enrol", protected(enrol_voice, form=False), methods=["POST"]),
        Route("/settings", protected(settings_page), methods=["GET"]),
        Route("/settings", protected(save_settings), methods=["POST"]),
    ]
    return Starlette(routes=routes)



class _InMemoryParser(MultiPartParser):
    """Uploaded recordings stay in memory: Starlette spools files over 1 MB to a temporary file, and a
    child's voice is not written to disk."""

    spool_max_size = MAX_UPLOAD + 1


async def _read_recordings(request: Request) -> list:
    """The uploaded audio files, decoded to 16 kHz mono in memory (coded ConfigError for a bad upload)."""
    import io

    from companion.audio.files import read_all_from
    from companion.errors import CompanionError

    if int(request.headers.get("content-length") or MAX_UPLOAD + 1) > MAX_UPLOAD:
        raise ConfigError(f"the recordings are larger than {MAX_UPLOAD // 2**20} MB", code="PARENT_UPLOAD_TOO_LARGE")
    try:
        form = await _InMemoryParser(request.headers, request.stream(), max_files=16, max_fields=4).parse()
    except Exception as err:  # noqa: BLE001 - a malformed upload is the parent's, not a crash
        raise ConfigError(f"the upload could not be read: {err}", code="PARENT_UPLOAD_INVALID") from err
    recordings = []
    try:
        for item in form.getlist("audio"):
            if not hasattr(item, "read"):
                continue
            data = await item.read()
            if data:
                try:
                    recordings.append(read_all_from(io.BytesIO(data), name=item.filename or "upload",
                                                    max_seconds=120.0))
                except CompanionError as err:
                    raise ConfigError(f"{item.filename}: {err.message}", code=err.code) from err
    finally:
        await form.close()
    if not recordings:
        raise ConfigError("choose one or more recordings of the child speaking", code="PARENT_UPLOAD_EMPTY")
    return recordings
