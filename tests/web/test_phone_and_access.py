"""Every main page on a phone (390×844) and on a laptop (1366×768), signed in as a branch
secretary and as an administrator, in real Chromium: no page is wider than the screen, no page
logs a console error, and axe-core finds no serious or critical accessibility violation.

axe-core comes from the npm registry (``npm pack axe-core@4``), vendored in ``vendor/`` with its
SHA-256 beside it; the test refuses to inject a file whose checksum does not match.

Screenshots of every page at both sizes go to ``test-artifacts/screenshots/{phone,laptop}-*.png``;
with ``ECARD_DOCS_SCREENSHOTS=1`` the phone views the README shows go to ``docs/screenshots/``.
Besides axe, each page is checked for text a secretary cannot act on (command lines, internal
codes, ``None``/``True``, ISO dates) and, on the phone, for buttons and fields under 44 px.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect

from schemas.messages import TapMode
from tests.server.transfers.factories import QIAN_CARD, build_elsewhere, release, requests
from tests.web.conftest import LiveServer, sign_in
from tests.web.world import CHEN_CARD, ZHOU_CARD, add_past_meetings

VENDOR = Path(__file__).parent / "vendor"
AXE = VENDOR / "axe.min.js"
AXE_SHA256 = VENDOR / "axe.min.js.sha256"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}
NARROWEST = {"width": 360, "height": 740}  # the bar: no page wider than a 360 px screen

# axe rules run: WCAG 2.0/2.1 A and AA plus axe's best practices; reported when serious or worse.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING_IMPACTS = {"serious", "critical"}


def axe_source() -> str:
    """The vendored axe-core, after checking it is byte for byte the file from the registry."""
    data = AXE.read_bytes()
    expected = AXE_SHA256.read_text().split()[0]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise AssertionError(
            f"{AXE} does not match its checksum ({actual} != {expected}); refusing to inject it"
        )
    return data.decode("utf-8")


@dataclass(frozen=True)
class MainPage:
    name: str  # also the screenshot's name: docs/screenshots/phone-<name>.png
    path: str
    heading: str  # text the page's <h1> shows, so a blank or error page cannot pass
    status: int = 200


@dataclass
class Seeded:
    live: LiveServer
    transfer_id: int


def main_pages(seeded: Seeded) -> list[MainPage]:
    world = seeded.live.world
    return [
        MainPage("dashboard", "/web/", "仪表盘"),
        MainPage("events", "/web/events", "活动"),
        MainPage("event-detail", f"/web/events/{world.event_a_id}", "主题党日"),
        MainPage("event-new", "/web/events/new", "新建活动"),
        MainPage("event-board", f"/web/events/{world.event_a_id}/board", "主题党日"),
        MainPage("members", "/web/members", "党员与卡"),
        MainPage("member-detail", f"/web/members/{world.members['陈建国']}", "陈建国"),
        MainPage("kiosks", "/web/kiosks", "签到机"),
        MainPage("kiosk-detail", f"/web/kiosks/{world.kiosk_id}", "服务中心一号机"),
        MainPage("ledgers", f"/web/ledgers?org={world.branch_a_id}", "组织生活台账"),
        MainPage("transfers", "/web/transfers", "组织关系转入申请"),
        MainPage("transfer-detail", f"/web/transfers/{seeded.transfer_id}", "钱七"),
        MainPage("transfer-new", "/web/transfers/new", "登记组织关系转入申请"),
        MainPage("audit", "/web/audit", "审计日志"),
        MainPage("supervision", "/web/supervision", "督查督办"),
        MainPage("leave", "/web/leave", "请假"),
        MainPage("not-found", "/web/members/999999", "不存在", status=404),
    ]


@pytest.fixture
def seeded(live_server: LiveServer) -> Seeded:
    """Pages with something on them: past meetings with taps (ledgers, audit), two taps into
    today's meeting (sheet, board), and a released transfer-in request (its detail page)."""
    world = live_server.world
    now = datetime.now(UTC)
    taps = add_past_meetings(live_server.engine, world, now=now)
    taps += [(CHEN_CARD, now - timedelta(minutes=3)), (ZHOU_CARD, now - timedelta(minutes=1))]
    for card_facts, at in taps:
        assert live_server.post_taps(world.tap_batch(card_facts, at=at).model_dump_json()).status_code == 200
    elsewhere = build_elsewhere(live_server.engine, live_server.keyring, now=now - timedelta(days=30))
    tapped = live_server.post_taps(
        world.tap_batch(QIAN_CARD, at=now, mode=TapMode.TRANSFER_IN).model_dump_json()
    )
    assert tapped.status_code == 200
    (filed,) = requests(live_server.engine)
    assert filed.id is not None
    release(live_server.engine, elsewhere, filed.id, now=now)
    return Seeded(live_server, filed.id)


@dataclass
class Watched:
    """A page with its console errors and uncaught exceptions collected."""

    page: Page
    errors: list[str]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[dict[str, int]], Watched]]:
    contexts = []

    def make(viewport: dict[str, int]) -> Watched:
        context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport=viewport)  # type: ignore[arg-type]
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(f"console: {message.text}")

        def on_page_error(error: Error) -> None:
            errors.append(f"uncaught: {error.message}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        return Watched(page, errors)

    yield make
    for context in contexts:
        context.close()


def overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: it fits)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return width


def axe_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # By evaluate, not a <script> tag: the pages' Content-Security-Policy allows only own scripts.
        page.evaluate(source)
    results: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        AXE_TAGS,
    )
    return [v for v in results["violations"] if v["impact"] in BLOCKING_IMPACTS]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:4]]
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
        summary = violation["nodes"][0].get("failureSummary", "")
        if summary:
            lines.append("    " + summary.replace("\n", " / ")[:300])
    return "\n".join(lines)


# Text a secretary cannot act on: command lines, internal codes and keys, Python values, ISO dates.
TECHNICAL_TEXT = {
    "a command line": re.compile(r"\becard |--[a-z]"),
    "an internal code or key": re.compile(r"\b[a-z]+_[a-z_]+\b|错误代码"),
    "a Python value": re.compile(r"\b(None|True|False)\b"),
    "an ISO date or time": re.compile(
        r"\b\d{4}-\d{2}-\d{2}\b|\d{2}:\d{2}(:\d{2})?\+\d{2}:\d{2}|\b\d{2}-\d{2} \d{2}:\d{2}"
    ),
    "a technical term": re.compile(r"十六进制|心跳|哈希"),
}


def technical_text(page: Page) -> list[str]:
    """What the page shows (rendered text only, as a reader sees it) that a secretary should not
    have to read."""
    text = page.inner_text("body")
    found = []
    for what, pattern in TECHNICAL_TEXT.items():
        if match := pattern.search(text):
            around = text[max(0, match.start() - 20) : match.end() + 20].replace("\n", " ")
            found.append(f"shows {what}: …{around}…")
    return found


SMALL_TARGETS = """() => Array.from(document.querySelectorAll(
    'button, .btn, select, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), textarea'))
  .filter(el => el.offsetParent !== null)
  .map(el => [el.getBoundingClientRect().height,
               (el.textContent || el.name || el.tagName).trim().slice(0, 20)])
  .filter(([height]) => height < 44)
  .map(([height, name]) => `${name} (${Math.round(height)} px)`)"""


def small_targets(page: Page) -> list[str]:
    """Buttons and fields shorter than 44 px: too small for a finger."""
    found: list[str] = page.evaluate(SMALL_TARGETS)
    return [f"tap targets under 44 px: {', '.join(found[:6])}"] if found else []


def check_page(watched: Watched, url: str, heading: str, axe: str, *, status: int = 200) -> list[str]:
    """Load *url* and list what is wrong with it (nothing: it passes)."""
    page = watched.page
    start = len(watched.errors)
    response = page.goto(url)
    assert response is not None
    problems = []
    if response.status != status:
        problems.append(f"HTTP {response.status}")
    expect(page.locator("h1").first).to_contain_text(heading)
    page.wait_for_load_state("networkidle") if "/board" not in url else page.wait_for_timeout(500)
    wider = overflow(page)
    if wider > 0:
        problems.append(f"the page is {wider} px wider than the window")
    problems.extend(technical_text(page))
    if page.viewport_size and page.viewport_size["width"] < 768:
        problems.extend(small_targets(page))
    violations = axe_violations(page, axe)
    if violations:
        problems.append("axe:\n" + describe(violations))
    # An error page's own status is the one console line expected (Chromium logs every 4xx).
    expected = f"the server responded with a status of {status}"
    problems.extend(e for e in watched.errors[start:] if status == 200 or expected not in e)
    return problems


# The phone views the README shows (the others stay in test-artifacts/screenshots/).
DOCS_PHONE_VIEWS = {"dashboard", "event-board", "event-detail", "members", "transfer-detail", "audit"}


def save_view(page: Page, viewport: str, name: str) -> None:
    """Every view goes to the test artifacts; with ECARD_DOCS_SCREENSHOTS=1 the README's phone
    views go to docs/screenshots/ instead."""
    docs = (
        viewport == "phone" and name in DOCS_PHONE_VIEWS and os.environ.get("ECARD_DOCS_SCREENSHOTS") == "1"
    )
    target = DOCS_SCREENSHOTS if docs else ARTIFACTS
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{viewport}-{name}.png"), full_page=True)


VIEWPORTS = {"phone": PHONE, "laptop": LAPTOP}


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
@pytest.mark.parametrize("account", ["secretary_a", "admin"])
def test_every_main_page_fits_logs_no_error_and_passes_axe(
    seeded: Seeded, open_page: Callable[[dict[str, int]], Watched], account: str, viewport: str
) -> None:
    axe = axe_source()
    live = seeded.live
    watched = open_page(VIEWPORTS[viewport])
    failures: dict[str, list[str]] = {}

    login_problems = check_page(watched, f"{live.url}/web/login", "党员e通卡", axe)
    if login_problems:
        failures["login"] = login_problems
    if account == "secretary_a":
        save_view(watched.page, viewport, "login")

    sign_in(watched.page, live.url, live.world.accounts[account])
    for main_page in main_pages(seeded):
        problems = check_page(
            watched, live.url + main_page.path, main_page.heading, axe, status=main_page.status
        )
        if problems:
            failures[main_page.name] = problems
        if account == "secretary_a":
            save_view(watched.page, viewport, main_page.name)

    assert not failures, "\n".join(
        f"[{account} {viewport}] {name}:\n  " + "\n  ".join(problems) for name, problems in failures.items()
    )


def test_no_page_is_wider_than_a_360_px_phone(
    seeded: Seeded, open_page: Callable[[dict[str, int]], Watched]
) -> None:
    watched = open_page(NARROWEST)
    live = seeded.live
    sign_in(watched.page, live.url, live.world.accounts["secretary_a"])
    too_wide = {}
    for main_page in main_pages(seeded):
        watched.page.goto(live.url + main_page.path)
        expect(watched.page.locator("h1").first).to_contain_text(main_page.heading)
        if (wider := overflow(watched.page)) > 0:
            too_wide[main_page.name] = wider
    assert not too_wide, f"pages wider than 360 px, by px: {json.dumps(too_wide)}"


def test_the_phone_menu_opens_and_closes_from_the_keyboard(
    seeded: Seeded, open_page: Callable[[dict[str, int]], Watched]
) -> None:
    watched = open_page(PHONE)
    page = watched.page
    live = seeded.live
    sign_in(page, live.url, live.world.accounts["secretary_a"])
    menu = page.get_by_role("button", name="菜单")
    navigation = page.get_by_role("navigation", name="主导航")
    # Folded on a phone: the links take no room until asked for.
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(navigation).to_be_hidden()
    expect(page.get_by_role("button", name="退出登录")).to_be_hidden()
    menu.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(navigation).to_be_visible()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    save_view(page, "phone", "menu-open")
    # Every link and button in the open menu is at least 44 px tall, a finger's width.
    for target in [*navigation.get_by_role("link").all(), menu, page.get_by_role("button", name="退出登录")]:
        box = target.bounding_box()
        assert box is not None
        assert box["height"] >= 44, f"{target} is {box['height']} px tall"
    page.keyboard.press("Escape")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(navigation).to_be_hidden()
    expect(menu).to_be_focused()
    menu.click()
    navigation.get_by_role("link", name="党员与卡").click()
    expect(page.locator("h1")).to_have_text("党员与卡")


def test_the_laptop_shows_the_navigation_without_a_menu_button(
    seeded: Seeded, open_page: Callable[[dict[str, int]], Watched]
) -> None:
    watched = open_page(LAPTOP)
    live = seeded.live
    sign_in(watched.page, live.url, live.world.accounts["secretary_a"])
    expect(watched.page.get_by_role("navigation", name="主导航")).to_be_visible()
    expect(watched.page.get_by_role("button", name="菜单")).to_be_hidden()


def test_the_checksum_guard_refuses_a_changed_axe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tmp_path / "axe.min.js"
    changed.write_bytes(AXE.read_bytes() + b"\n// changed")
    monkeypatch.setattr(f"{__name__}.AXE", changed)
    with pytest.raises(AssertionError, match="does not match its checksum"):
        axe_source()


def test_an_error_stays_until_closed_and_marks_its_field(
    seeded: Seeded, open_page: Callable[[dict[str, int]], Watched]
) -> None:
    """A refused form: the message stays however long the secretary takes to read it, the field
    it is about is marked (red border, aria-invalid, the message beside it), and the close button
    dismisses it. A success message still goes away by itself."""
    watched = open_page(PHONE)
    page = watched.page
    live = seeded.live
    page.clock.install()
    sign_in(page, live.url, live.world.accounts["secretary_a"])
    page.goto(f"{live.url}/web/events/new")
    page.get_by_label("活动名称").fill("时间填反了")
    page.get_by_label("开始时间").fill("2026-12-05T11:00")
    end = page.get_by_label("结束时间")
    end.fill("2026-12-05T09:00")
    page.get_by_role("button", name="创建活动").click()

    toast = page.locator(".toast-error")
    expect(toast).to_contain_text("结束时间须晚于开始时间")
    expect(end).to_have_attribute("aria-invalid", "true")
    expect(end).to_be_focused()
    note = page.locator(".field-error")
    expect(note).to_contain_text("结束时间须晚于开始时间")
    assert end.get_attribute("aria-describedby") == note.get_attribute("id")
    assert end.evaluate("input => getComputedStyle(input).borderTopColor") == "rgb(179, 38, 30)"
    page.clock.run_for(60_000)  # a minute later it is still there
    expect(toast).to_be_visible()

    end.fill("2026-12-05T12:00")  # correcting the field clears its mark
    expect(end).not_to_have_attribute("aria-invalid", "true")
    expect(note).to_have_count(0)
    toast.get_by_role("button", name="关闭提示").click()
    page.clock.run_for(1_000)
    expect(toast).to_have_count(0)
    assert watched.errors == []


def test_a_success_message_goes_away_by_itself(
    seeded: Seeded, open_page: Callable[[dict[str, int]], Watched]
) -> None:
    watched = open_page(PHONE)
    page = watched.page
    live = seeded.live
    page.clock.install()
    sign_in(page, live.url, live.world.accounts["secretary_a"])
    page.goto(f"{live.url}/web/members/{live.world.members['吴海峰']}")
    page.get_by_label("易通卡卡号").fill("3104393000000066666")
    page.get_by_role("button", name="绑定", exact=True).click()
    toast = page.locator(".toast", has_text="绑定卡")
    expect(toast).to_be_visible()
    expect(toast.get_by_role("button", name="关闭提示")).to_be_visible()
    page.clock.run_for(10_000)
    expect(toast).to_have_count(0)
