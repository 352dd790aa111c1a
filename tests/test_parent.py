"""Parents in control: settings the loop obeys, and the dashboard's auth, CSRF and rate limiting."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from starlette.testclient import TestClient

from companion.brain.conversation import Conversation, SpokenReply
from companion.config import CompanionConfig
from companion.errors import ConfigError
from companion.llm.generate import Generator
from companion.memory.store import MemoryStore
from companion.parent import auth
from companion.parent import settings as ps
from companion.parent.app import create_app
from tests.conftest import roomy_config

PASSWORD = "correct horse battery"


@pytest.fixture()
def store(tmp_path):
    s = MemoryStore(tmp_path)
    yield s
    s.close()


@pytest.fixture()
def client(store):
    auth.set_password(store, PASSWORD)
    session = store.start_session("mia")
    store.add_turn(session, "mia", "I have a dog called Rex.", "Rex sounds lovely!")
    store.add_fact("mia", "pet", "Rex", None)
    return TestClient(create_app(store, CompanionConfig()), follow_redirects=False)


def logged_in_dashboard(store: MemoryStore, child: str = "mia") -> tuple[TestClient, str]:
    """The dashboard over ``store`` (``child`` has talked once), logged in: the client and its CSRF token."""
    auth.set_password(store, PASSWORD)
    store.add_turn(store.start_session(child), child, "hello", "hi!")
    client = TestClient(create_app(store, CompanionConfig()), follow_redirects=False)
    _login(client)
    return client, _csrf(client)


def _login(client, password=PASSWORD):
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"csrf": token, "password": password})


def _csrf(client, path="/"):
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def _protected_routes(client):
    """Every route of the app but the login page, path parameters filled in (a new route is covered too)."""
    for route in client.app.routes:
        if route.path == "/login":
            continue
        path = re.sub(r"\{\w+:int\}", "1", re.sub(r"\{child\}", "mia", route.path))
        for method in route.methods - {"HEAD"}:
            yield method, path


def test_every_protected_route_needs_a_session(client):
    routes = list(_protected_routes(client))
    assert len(routes) >= 12
    for method, path in routes:
        response = client.request(method, path, data={"csrf": "x"})
        if method == "GET" and not path.startswith("/api/"):
            assert response.status_code == 303 and response.headers["location"] == "/login", (method, path)
        else:
            assert response.status_code == 401, (method, path)
    assert client.get("/login").status_code == 200


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(client):
    response = _login(client)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert client.get("/").status_code == 200 and "mia" in client.get("/").text
    assert client.post("/logout", data={"csrf": _csrf(client)}).status_code == 303
    assert client.get("/").status_code == 303  # the old session cookie no longer opens anything


def test_posts_without_the_csrf_token_are_rejected(client, store):
    _login(client)
    assert client.post("/settings", data={"volume": "10"}).status_code == 403
    assert client.post("/settings", data={"volume": "10", "csrf": "forged"}).status_code == 403
    assert ps.load(store).volume == 100  # nothing changed
    client.get("/login")  # the login form has its own token, bound to a cookie; a forged one is refused
    assert client.post("/login", data={"csrf": "forged", "password": PASSWORD}).status_code == 403


def test_the_sixth_wrong_password_in_a_minute_is_refused(client):
    for _ in range(5):
        assert _login(client, "wrong password").status_code == 401
    assert _login(client, PASSWORD).status_code == 429  # refused unchecked, even the right one
    assert client.get("/").status_code == 303


def test_limiter_forgets_failures_after_the_window():
    limiter = auth.LoginLimiter(max_failures=5, window_s=60)
    for i in range(5):
        limiter.failed("1.2.3.4", now=100.0 + i)
    assert not limiter.allowed("1.2.3.4", now=110.0) and limiter.allowed("5.6.7.8", now=110.0)
    assert limiter.allowed("1.2.3.4", now=170.0)


def test_parent_pages_show_and_change_memory_and_settings(client, store):
    _login(client)
    csrf = _csrf(client)
    assert "Rex sounds lovely" in client.get("/children/mia/transcripts").text
    assert "Rex" in client.get("/children/mia/transcripts?q=dog").text
    assert "Nothing matches" in client.get("/children/mia/transcripts?q=dinosaur").text
    fact_id = store.fact_rows("mia")[0]["id"]
    client.post(f"/children/mia/facts/{fact_id}", data={"csrf": csrf, "value": "Max", "action": "save"})
    assert [f["value"] for f in store.fact_rows("mia")] == ["Max"]
    response = client.post("/settings", data={"csrf": csrf, "quiet_start": "19:30", "quiet_end": "07:00",
                                              "limit_mia": "20", "deny_topics": "youtube, video games",
                                              "retention_days": "7", "volume": "60", "persona": "luna"})
    assert response.status_code == 200 and "Saved" in response.text
    saved = ps.load(store)
    assert (saved.quiet_start, saved.quiet_end, saved.daily_limit_min, saved.deny_topics, saved.volume,
            saved.persona) == ("19:30", "07:00", {"mia": 20}, ("youtube", "video games"), 60, "luna")
    alert = store.add_alert("mia", "disclosure", "someone hurt me")
    assert "someone hurt me" in client.get("/").text  # open alerts are on the overview
    client.post(f"/alerts/{alert}/seen", data={"csrf": csrf})
    assert store.alerts("mia")[0]["seen"] and "someone hurt me" not in client.get("/").text
    turn = store.turns("mia")[0].id
    client.post(f"/children/mia/turns/{turn}/delete", data={"csrf": csrf})
    assert store.turns("mia") == [] and "Rex sounds lovely" not in client.get("/children/mia/transcripts").text
    client.post(f"/children/mia/facts/{fact_id}", data={"csrf": csrf, "value": "Max", "action": "delete"})
    assert store.fact_rows("mia") == []
    bad = client.post("/settings", data={"csrf": csrf, "quiet_start": "25:00", "quiet_end": "07:00"})
    assert bad.status_code == 400 and ps.load(store) == saved
    assert client.post("/children/mia/erase", data={"csrf": csrf, "confirm": "nope"}).status_code == 400
    assert client.post("/children/mia/erase", data={"csrf": csrf, "confirm": "mia"}).status_code == 200
    assert store.children() == [] and store.count_turns() == 0


def test_quiet_hours_wrap_past_midnight_and_settings_validate():
    s = ps.ParentSettings(quiet_start="19:30", quiet_end="07:00")
    assert s.quiet_now(dt.datetime(2026, 1, 1, 21, 0)) and s.quiet_now(dt.datetime(2026, 1, 1, 6, 59))
    assert not s.quiet_now(dt.datetime(2026, 1, 1, 7, 0)) and not s.quiet_now(dt.datetime(2026, 1, 1, 12, 0))
    assert ps.ParentSettings(quiet_start="13:00", quiet_end="14:00").quiet_now(dt.datetime(2026, 1, 1, 13, 30))
    for bad in ({"quiet_start": "7", "quiet_end": "08:00"}, {"quiet_start": "07:00"}, {"volume": 101},
                {"daily_limit_min": {"a": -1}}):
        with pytest.raises(ConfigError):
            ps.ParentSettings(**bad)


def _reply(conversation, heard):
    return asyncio.run(conversation.reply(heard))


def test_the_loop_obeys_quiet_hours_limits_and_deny_topics_from_the_next_turn(tiny_model_dir, store):
    generator = Generator(tiny_model_dir)
    conversation = Conversation(generator, roomy_config(), "mia", store)
    now = dt.datetime.now()
    # Around midnight the window wraps past it; it still covers now.
    start, end = (now - dt.timedelta(minutes=5)).strftime("%H:%M"), (now + dt.timedelta(minutes=5)).strftime("%H:%M")
    ps.save(store, ps.ParentSettings(quiet_start=start, quiet_end=end))
    assert _reply(conversation, "tell me a story").reply == ps.RESTING_LINE  # no restart: read at the turn
    # A disclosure is still heard and alerted during quiet hours.
    disclosure = _reply(conversation, "my uncle hits me and said not to tell")
    assert disclosure.reply != ps.RESTING_LINE and disclosure.safety.action == "alert"
    assert store.alerts("mia")
    ps.save(store, ps.ParentSettings(daily_limit_min={"mia": 1}))
    spent = asyncio.run(conversation.plan("a long chat"))
    asyncio.run(conversation.remember(SpokenReply(spent, "yes", talk_s=61.0)))
    assert _reply(conversation, "tell me a story").reply == ps.WIND_DOWN_LINE
    ps.save(store, ps.ParentSettings(deny_topics=("minecraft",)))
    assert _reply(conversation, "can we talk about minecraft").safety.action == "redirect"
    ps.save(store, ps.ParentSettings())
    # The input check answers again (the plan's verdict: the tiny model's unseeded babble may itself trip the
    # output check now and then, which is not what this tests).
    assert asyncio.run(conversation.plan("can we talk about minecraft")).verdict.action == "answer"
    asyncio.run(conversation.close())
    generator.close()


def test_password_is_stored_as_an_argon2_hash(store):
    with pytest.raises(ConfigError):
        auth.set_password(store, "short")
    auth.set_password(store, PASSWORD)
    stored = store.setting(auth.PASSWORD_KEY)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert auth.check_password(store, PASSWORD) and not auth.check_password(store, PASSWORD + "x")
