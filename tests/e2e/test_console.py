"""The operator console in a real browser: login, each screen, an aggregate's timeline and its
request chain, a replay, the live chart, and who is kept out.

Headless Chromium (see ``_browser``) against the e2e app's ingress on Serve; commands go in
through GraphQL as a client would send them. The admin browser is one per session, logged in
by pasting a token into the login form like an operator; the refusals use a browser of their own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from _browser import PAGE_S, SCREENS, ConsolePage, chromium
from _gql import ok, send, token

from eventray.serving.console.auth import COOKIE_NAME

ADMIN = f"console-admin-{uuid.uuid4().hex[:8]}"
#: a replay reads the whole shared topic while the demo may be writing to it
REPLAY_S = 600.0


@pytest.fixture(scope="module")
def indexed(api: dict[str, Any]) -> dict[str, Any]:
    """The app with its event index running (the Events screen reads it)."""
    from eventray.platform.projections.ensure import ensure_projections
    from eventray.platform.projections.event_index import event_index_name

    rt = api["rt"]
    ensure_projections(rt, names=[event_index_name(rt.app.name)])
    return api


@pytest.fixture(scope="session")
def browser(api: dict[str, Any]) -> Iterator[ConsolePage]:
    """A browser logged in to the console as an admin through the login form."""
    driver = chromium()
    try:
        page = ConsolePage(driver, api["base"])
        page.login(token(ADMIN, "admin"))
        yield page
    finally:
        driver.quit()


@pytest.fixture
def console(browser: ConsolePage) -> ConsolePage:
    """The admin browser on a console page, logged in again if its 15-minute session ran out."""
    if browser.on_login_page() or browser.session_cookie() is None:
        browser.login(token(ADMIN, "admin"))
    browser.browser_log()  # what earlier tests left in the log is theirs
    return browser


@pytest.fixture
def stranger(api: dict[str, Any]) -> Iterator[ConsolePage]:
    """A browser with no console session."""
    driver = chromium()
    try:
        yield ConsolePage(driver, api["base"])
    finally:
        driver.quit()


def _account(client: Any, uid: str, *, deposits: tuple[int, ...] = ()) -> tuple[str, list[dict[str, Any]]]:
    owner, acct = f"co-{uid}", f"ca-{uid}"
    ok(send(client, "registerUser", userId=owner, name="Console", email=f"console-{uid}@example.com"))
    ok(send(client, "openAccount", accountId=acct, ownerId=owner, currency="EUR"))
    results = [ok(send(client, "deposit", accountId=acct, amount=amount, commandId=f"dep{i}-{uid}"))
               for i, amount in enumerate(deposits, 1)]
    return acct, results


def _no_errors(page: ConsolePage, screen: str) -> None:
    errors = [e.text for e in page.all(".error, [role=alert]") if e.is_displayed()]
    assert errors == [], f"the {screen} screen shows errors: {errors}"


def _screen_content(page: ConsolePage, key: str) -> None:
    """What each screen must show beyond its heading."""
    if key == "events":
        types = [o.text for o in Select(page.visible("#agg-type")).options]
        assert "Account" in types and "User" in types, types
        page.visible("#correlation-form")
    elif key == "projections":
        row = page.visible("tr.projection[data-name='account_balances']")
        assert "current" in row.text and "account_balances" in row.text, row.text
        page.visible("#replay-account_balances")
    elif key == "sagas":
        page.visible("table#sagas")
        assert "TransferMoney" in page.text("form.filters"), page.text("form.filters")
    elif key == "live":
        page.present("#live-status[data-state='live']")
        page.present("#chart-commands .plot canvas")
        page.wait(lambda d: int(d.find_element(By.ID, "v-samples").text) >= 3,
                  message="the live samples stopped coming")
        assert int(page.present("#chart-commands").get_attribute("data-points")) >= 3
    elif key == "models":
        row = page.visible("#model-anomaly")
        assert row.find_element(By.CSS_SELECTOR, ".default-version").text.strip(), row.text
    elif key == "cluster":
        head = page.visible("#nodes .node")
        assert "head" in head.text, head.text
        actors = [a.text for a in page.all("#nodes tr.actor")]
        assert any("shard" in a.lower() for a in actors), actors
        assert any("projection" in a.lower() for a in actors), actors


def test_login_and_every_screen(console: ConsolePage, tmp_path):
    cookie = console.session_cookie()
    assert cookie is not None, "no session cookie after logging in"
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    assert cookie["path"] == urlsplit(console.url).path
    assert console.driver.execute_script("return document.cookie").find(COOKIE_NAME) == -1  # HttpOnly
    assert console.text("#subject") == ADMIN

    for key in SCREENS:
        console.nav(key)
        _screen_content(console, key)
        _no_errors(console, key)
        shot = tmp_path / f"{key}.png"
        assert console.driver.save_screenshot(str(shot)), f"no screenshot of {key}"
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (key, len(data))
        assert console.csp_violations() == [], f"CSP violations on the {key} screen"


def test_console_pages_carry_the_console_csp(api: dict[str, Any]):
    admin = {"authorization": f"Bearer {token(ADMIN, 'admin')}"}
    with httpx.Client(timeout=30) as http:
        for path, headers in (("/console/login", {}), ("/console/events", admin), ("/console/live", admin)):
            r = http.get(f"{api['base']}{path}", headers=headers)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
            directives = dict(d.strip().partition(" ")[::2] for d in r.headers["content-security-policy"].split(";"))
            assert directives["script-src"] == "'self'", (path, directives)
            assert directives["style-src"] == "'self'", (path, directives)
            assert "unsafe-inline" not in r.headers["content-security-policy"], path
            assert "unsafe-eval" not in r.headers["content-security-policy"], path
            assert r.headers["cache-control"] == "no-store", path


def test_following_an_aggregate_timeline_and_its_request_chain(console: ConsolePage, indexed, client_for, uid):
    acct, deposits = _account(client_for(f"teller-{uid}", "teller"), uid, deposits=(100, 250, 40))

    console.nav("events")
    Select(console.visible("#agg-type")).select_by_visible_text("Account")
    field = console.visible("#agg-id")
    field.clear()
    field.send_keys(acct)

    def timeline_complete(driver: Any) -> bool:
        # the event index is a projection: ask again until it has all four events
        items = driver.find_elements(By.CSS_SELECTOR, "#timeline #events > li.event")
        if len(items) == 4 and driver.find_element(By.ID, "timeline-id").text == acct:
            return True
        if not driver.find_elements(By.CSS_SELECTOR, ".htmx-request"):
            driver.find_element(By.ID, "show-timeline").click()
        return False

    console.wait(timeline_complete, timeout=PAGE_S * 2, poll=2.0,
                 message=f"the timeline of {acct} never showed its 4 events")
    assert urlsplit(console.driver.current_url).query == f"type=Account&id={acct}"  # hx-push-url
    versions = [e.text for e in console.all("#events li.event summary .version")]
    types = [e.text for e in console.all("#events li.event summary .etype")]
    assert versions == ["v4", "v3", "v2", "v1"]
    assert types == ["MoneyDeposited"] * 3 + ["AccountOpened"]

    newest = console.driver.find_element(By.ID, "event-v4")
    assert newest.get_attribute("open") is None
    newest.find_element(By.TAG_NAME, "summary").click()
    console.wait(lambda d: newest.get_attribute("open") is not None, message="event v4 did not open")
    payload = json.loads(console.visible("#event-v4 .payload pre").text)
    assert payload == {"type": "MoneyDeposited", "amount": 40, "balance_after": 390}
    state = json.loads(console.visible("#event-v4 .state pre").text)
    assert state["balance"] == 390 and state["owner_id"] == f"co-{uid}"
    diff = {row.find_element(By.TAG_NAME, "td").text: (row.find_element(By.CSS_SELECTOR, ".before").text,
                                                        row.find_element(By.CSS_SELECTOR, ".after").text)
            for row in console.all("#event-v4 .diff-table tbody tr")}
    assert diff == {"balance": ("350", "390")}
    command = console.driver.find_element(
        By.XPATH, "//details[@id='event-v4']//dt[.='command id']/following-sibling::dd[1]")
    assert command.text == deposits[2]["commandId"] == f"dep3-{uid}"

    link = console.visible("#event-v4 a.correlation")
    correlation = link.text
    assert correlation
    link.click()
    console.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#chain").find_elements(By.ID, "chain-id")
                 and d.find_element(By.ID, "chain-id").text == correlation,
                 message=f"the chain of {correlation} did not open")
    console.visible("#chain-steps")
    events = [r.text for r in console.all("#chain-steps tr.chain-event")]
    assert len(events) == 1 and f"Account {acct}" in events[0] and "MoneyDeposited" in events[0], events
    commands = [c.text for c in console.all("#chain-steps > li:first-child code")]
    assert commands == [f"dep3-{uid}"]
    projections = console.text("#chain-steps")
    assert "account_balances" in projections and "account_activity" in projections, projections
    # the timeline stayed beside the chain
    assert console.driver.find_element(By.ID, "timeline-id").text == acct
    assert console.csp_violations() == []


def test_replay_from_the_projections_screen(console: ConsolePage):
    name = "user_directory"
    console.nav("projections")
    row = f"tr.projection[data-name='{name}']"
    current = [r for r in console.all(row) if "current" in r.text]
    assert len(current) == 1, [r.text for r in console.all(row)]
    version = int(current[0].get_attribute("id").rsplit("-v", 1)[1])

    console.visible(f"#replay-{name}").click()
    confirm = console.visible("#replay-confirm")
    assert name in confirm.text and "offset 0" in confirm.text
    console.visible("#confirm-replay").click()

    audit = console.visible("#replay-audit")
    assert f"replay of {name} by {ADMIN}" in audit.text, audit.text
    replay_id = console.present(".replay-progress").get_attribute("id").removeprefix("replay-")
    # the progress element polls every second until its phase is final
    console.wait(lambda d: d.find_element(By.CSS_SELECTOR, ".replay-progress").get_attribute("data-phase")
                 in ("live", "failed", "error"), timeout=REPLAY_S, poll=1.0,
                 message=f"replay {replay_id} of {name} did not finish in {REPLAY_S:g}s")
    progress = console.present(".replay-progress")
    assert progress.get_attribute("data-phase") == "live", progress.text
    assert console.text("#replay-phase") == "live"
    bar = console.driver.find_element(By.ID, "replay-bar")
    assert float(bar.get_attribute("value")) == float(bar.get_attribute("max")) > 0
    assert f"v{version + 1} is current" in progress.text, progress.text

    # the table (refreshed every 5 s) shows the new version as the current one
    console.wait(lambda d: any(r.get_attribute("id") == f"projection-{name}-v{version + 1}" and "current" in r.text
                               for r in d.find_elements(By.CSS_SELECTOR, row)),
                 message=f"{name} v{version + 1} never became current in the table")
    console.nav("projections")
    lines = [li.text for li in console.all("#audit .audit-line")]
    assert any(f"replay of {name} by {ADMIN}" in line and replay_id in line for line in lines), lines
    assert console.csp_violations() == []


def test_live_chart_follows_commands(console: ConsolePage, client_for, uid):
    teller = client_for(f"teller-{uid}", "teller")
    acct, _ = _account(teller, uid)
    console.nav("live")
    console.present("#live-status[data-state='live']")

    def commands_per_s(driver: Any) -> float:
        text = driver.find_element(By.ID, "v-commands").text
        return float(text) if text not in ("", "-") else -1.0

    # quiet first (the account's commands have left the one-second window), so a change is ours
    console.wait(lambda d: commands_per_s(d) == 0.0, message="commands/s never read 0 before sending")
    points = int(console.present("#chart-commands").get_attribute("data-points"))
    sent: list[dict[str, Any]] = []

    def deposits() -> None:
        for _ in range(20):
            sent.append(send(teller, "deposit", accountId=acct, amount=1))
            time.sleep(0.2)

    sender = threading.Thread(target=deposits, name="console-live-deposits", daemon=True)
    sender.start()
    try:
        seen = console.wait(lambda d: (v := commands_per_s(d)) > 0 and v, timeout=PAGE_S, poll=0.2,
                            message="the live feed never showed the deposits as commands/s")
    finally:
        sender.join(timeout=PAGE_S)
    assert not sender.is_alive() and len(sent) == 20
    assert all(r["__typename"] == "CommandSuccess" for r in sent), sent
    assert seen > 0
    assert int(console.present("#chart-commands").get_attribute("data-points")) > points
    assert console.present("#live-status").get_attribute("data-state") == "live"
    assert console.csp_violations() == []


def test_customer_cannot_open_the_console(stranger: ConsolePage, api: dict[str, Any], uid):
    console_path = urlsplit(stranger.url).path
    stranger.driver.get(f"{stranger.url}/events")
    stranger.wait(lambda d: stranger.on_login_page(), message="no session, yet /console/events did not go to login")
    assert stranger.present("input[name='next']").get_attribute("value") == f"{console_path}/events"
    assert stranger.all("nav a") == []

    customer = token(f"cust-{uid}", "customer")
    stranger.submit_token(customer)
    error = stranger.visible("#login-error")
    assert "admin role" in error.text and "customer" in error.text, error.text
    assert stranger.on_login_page()
    assert stranger.session_cookie() is None
    stranger.driver.get(f"{stranger.url}/events")
    stranger.wait(lambda d: stranger.on_login_page(), message="a refused login still opened /console/events")
    assert stranger.csp_violations() == []

    with httpx.Client(timeout=30) as http:
        r = http.get(f"{api['base']}/console/events", headers={"authorization": f"Bearer {customer}"})
        assert r.status_code == 403 and "admin role" in r.text
        r = http.get(f"{api['base']}/console/events", headers={"accept": "text/html"})
        assert r.status_code == 303 and urlsplit(r.headers["location"]).path == f"{console_path}/login"
        r = http.get(f"{api['base']}/console/live/stream", headers={"authorization": f"Bearer {customer}"})
        assert r.status_code == 403


@pytest.fixture
def second_digits_version(api: dict[str, Any]) -> Iterator[str]:
    """A version 2 of the digits model (another seed) in the e2e registry; version 1 is the
    default again afterwards, as the other tests expect."""
    from eventray.platform.ml.registry import Registry, promote
    from eventray.platform.ml.training import train_all

    models = api["settings"].models_dir
    if "2" not in Registry(models).versions("digits"):
        train_all(models, version="2", seed=1, names=("digits",))
    yield "2"
    promote(models, "digits", "1")


def _default_of(page: ConsolePage, model: str) -> str:
    return page.driver.find_element(By.CSS_SELECTOR, f"#model-{model} .default-version").text.strip()


def test_promote_from_the_models_screen(console: ConsolePage, second_digits_version: str, client_for, uid):
    console.nav("models")
    assert _default_of(console, "digits") == "1"
    for version in (second_digits_version, "1"):
        Select(console.visible("#model-digits select[name=version]")).select_by_value(version)
        console.visible("#promote-digits").click()
        console.wait(lambda d, v=version: _default_of(console, "digits") == v,
                     message=f"digits {version} did not become the default")
        lines = [li.text for li in console.all("#audit .audit-line")]
        assert any(f"promote of digits {version} by {ADMIN}" in line for line in lines), lines
        # the next request is served by the promoted version
        got = client_for(f"teller-{uid}", "teller").data(
            "query($p: [Float!]!) { classifyDigit(pixels: $p) { modelVersion } }", {"p": [0.0] * 64})
        assert got["classifyDigit"]["modelVersion"] == version, got
    assert console.csp_violations() == []
