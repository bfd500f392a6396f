"""Browser-test fixtures: a real server over HTTP, headless Chromium, and signing in.

* ``live_server``: the real app (``create_app``) served by uvicorn on 127.0.0.1 in a thread,
  on a fresh migrated SQLite database, with the real clock (taps are "now").
  ``live_server.world`` is the :class:`~tests.web.world.WebWorld` seeded into it.
* ``site``: the seeded database and settings; ``web_client``: a TestClient over the whole app.
* ``browser_page``: a Playwright page in Debian's Chromium (zh-CN, 1440×900), one context per
  test so cookies never leak between tests.
* ``login(page, account)``: signs in through the login form and waits for the dashboard.
* ``screenshot(page, name)``: saves ``test-artifacts/screenshots/<name>.png``.
"""

from __future__ import annotations

import copy
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from server.app import create_app
from server.clock import utc_now
from server.config import ServerSettings
from server.db import make_engine
from server.keyring import Keyring
from server.migrate import migrate
from tests.web.world import WebAccount, WebWorld, build_web_world

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Page, Playwright

TEST_SECRET = "web-test-secret-7c1f0e9d8b2a4c6e5f3a1b0c9d8e7f60"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--lang=zh-CN",  # date and time inputs follow the browser's language, not the page's
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@dataclass
class Site:
    """A migrated database seeded with :class:`WebWorld`, and the settings to serve it."""

    settings: ServerSettings
    engine: Engine  # the test's own engine, for seeding and checking the database
    keyring: Keyring
    world: WebWorld


@dataclass
class LiveServer(Site):
    url: str
    app: FastAPI

    def post_taps(self, batch_json: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/taps",
            content=batch_json,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WebWorld]:
    """A migrated SQLite file with the world in it, built once; each test gets a copy (migrating
    and hashing four passwords with argon2 for every test would cost about a second each)."""
    path = tmp_path_factory.mktemp("web-seed") / "seed.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
        world = build_web_world(engine, Keyring(TEST_SECRET.encode()), now=utc_now())
    finally:
        engine.dispose()
    return path, world


@pytest.fixture
def site(tmp_path: Path, seeded_database: tuple[Path, WebWorld]) -> Iterator[Site]:
    seed, world = seeded_database
    database = tmp_path / "web.sqlite"
    # SQLite's backup API copies a consistent database, WAL contents included.
    with closing(sqlite3.connect(seed)) as source, closing(sqlite3.connect(database)) as target:
        source.backup(target)
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{database}",
        secret_key=SecretStr(TEST_SECRET),
        scheduler=False,  # no start-up sweep racing the pages (tests/server/supervision/test_jobs.py)
    )
    engine = make_engine(settings.database_url)
    try:
        yield Site(settings, engine, Keyring(TEST_SECRET.encode()), copy.deepcopy(world))
    finally:
        engine.dispose()


@pytest.fixture
def web_client(site: Site) -> Iterator[TestClient]:
    """The whole app in-process over HTTP (no browser), for status codes, headers and cookies."""
    with TestClient(create_app(site.settings), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def live_server(site: Site) -> Iterator[LiveServer]:
    app = create_app(site.settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(
            site.settings, site.engine, site.keyring, site.world, url=f"http://127.0.0.1:{port}", app=app
        )
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    chromium = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def browser_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1440, "height": 900}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Page, base_url: str, account: WebAccount) -> None:
    """Sign in through the form, as a person would, and wait for the dashboard."""
    page.goto(f"{base_url}/web/login")
    page.get_by_label("用户名").fill(account.username)
    page.get_by_label("密码").fill(account.password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{base_url}/web/")


def sign_out(page: Page, base_url: str) -> None:
    """Sign out with the header's button and wait for the sign-in page it leads to (a page.goto
    before then would be cut short by that navigation)."""
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(f"{base_url}/web/login*")


@pytest.fixture
def login(live_server: LiveServer) -> Callable[[Page, WebAccount], None]:
    """``login(page, live_server.world.accounts["secretary_a"])``."""

    def do_login(page: Page, account: WebAccount) -> None:
        sign_in(page, live_server.url, account)

    return do_login


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
