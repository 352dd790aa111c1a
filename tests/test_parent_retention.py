"""The dashboard's transcript retention: the value in force shown in whole days, and what an empty field means."""

from __future__ import annotations

import re
from dataclasses import replace

from starlette.testclient import TestClient

from companion.config import CompanionConfig
from companion.parent import auth
from companion.parent import settings as ps
from companion.parent.app import create_app

from tests.test_parent import PASSWORD, store  # noqa: F401 - the same store fixture and password


def _client(store, retention_days: float = 30.0) -> TestClient:
    auth.set_password(store, PASSWORD)
    config = CompanionConfig()
    config = replace(config, memory=replace(config.memory, retention_days=retention_days))
    client = TestClient(create_app(store, config), follow_redirects=False)
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/login", data={"csrf": token, "password": PASSWORD})
    return client


def _field(html: str) -> str:
    return re.search(r'<input[^>]*id="retention_days"[^>]*>', html).group(0)


def _in_force(html: str) -> str:
    return re.search(r'id="retention_in_force">([^<]*)<', html).group(1)


def _save(client, retention: str):
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/settings").text).group(1)
    return client.post("/settings", data={"csrf": csrf, "retention_days": retention, "volume": "100"})


def test_the_default_is_shown_in_whole_days_and_the_empty_field_is_explained(store):
    html = _client(store).get("/settings").text
    assert "30.0" not in html and "0: 30" not in html
    assert "empty: the robot's default, 30 days" in html
    assert 'value=""' in _field(html)  # not a 0 that looks like "keep nothing"
    assert _in_force(html) == "Now kept for 30 days."


def test_a_parents_choice_is_shown_as_the_value_in_force_and_emptying_it_goes_back(store):
    client = _client(store, retention_days=14.0)
    saved = _save(client, "7")
    assert saved.status_code == 200 and ps.load(store).retention_days == 7
    assert 'value="7"' in _field(saved.text) and _in_force(saved.text) == "Now kept for 7 days."
    assert _in_force(client.get("/settings").text) == "Now kept for 7 days."
    cleared = _save(client, "")
    assert ps.load(store).retention_days == 0 and _in_force(cleared.text) == "Now kept for 14 days."


def test_zero_days_is_refused_rather_than_read_as_the_default(store):
    client = _client(store)
    _save(client, "7")
    refused = _save(client, "0")
    assert refused.status_code == 400 and "leave it empty" in refused.text
    assert ps.load(store).retention_days == 7


def test_days_are_written_as_a_parent_reads_them():
    assert [ps.days_text(d) for d in (30.0, 1.0, 7, 1.5)] == ["30 days", "1 day", "7 days", "1.5 days"]
    assert ps.ParentSettings().retention_in_force(30.0) == 30.0
    assert ps.ParentSettings(retention_days=5).retention_in_force(30.0) == 5.0
