"""The portal in a real browser: a resident on a phone, intake staff, a mediator, the language switch,
and a bad form. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re
import struct
import zlib

import pytest

from .conftest import DEMO_PASSWORD, DESKTOP, PHONE

pytestmark = pytest.mark.browser


def make_png(path, width=24, height=16) -> None:
    """A small valid PNG (a colour gradient), written without any imaging library."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 10 % 256, y * 15 % 256, 160)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    path.write_bytes(png)


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide on a {page.viewport_size['width']}px screen"


def login(page, base: str, username: str, next_path: str | None = None) -> None:
    page.goto(base + "/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("[data-testid=login-form] button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, page.inner_text("main")


def test_resident_files_and_looks_up_a_case_on_a_phone(server, new_page, artifacts, tmp_path):
    page = new_page(PHONE)
    page.goto(server.url + "/")
    assert page.locator("meta[name=viewport]").count() == 1
    assert "24小时" in page.inner_text("main")
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-home.png", full_page=True)

    page.click("[data-testid=go-file]")
    page.wait_for_url("**/file")
    page.check("input[name=type][value=mediation]")
    page.select_option("select[name=category]", "labour")
    page.select_option("select[name=institution_id]", label="县矛盾纠纷多元化解中心")
    page.fill("input[name=title]", "工地拖欠工资三个月")
    page.fill("textarea[name=description]", "2026年8月至10月在县城某工地务工，工资一万二千元至今未付，多次讨要未果。")
    page.fill("input[name='applicant.name']", "张三")
    page.fill("input[name='applicant.phone']", "138 1234 5678")
    page.fill("input[name='respondents.0.name']", "某建筑劳务公司")
    page.fill("input[name='respondents.0.phone']", "0537-1234567")
    png = tmp_path / "wage-slip.png"
    make_png(png)
    page.set_input_files("input[name=evidence]", str(png))
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-file-form.png", full_page=True)
    page.click("[data-testid=submit-case]")

    page.wait_for_selector("[data-testid=access-code]")
    number = page.inner_text("[data-testid=case-number]").strip()
    code = page.inner_text("[data-testid=access-code]").strip()
    assert re.fullmatch(r"[A-Z]{2,8}\d*-\d{4}-\d{6}", number), number
    assert re.fullmatch(r"[2-9A-Z]{8}", code), code
    assert code not in page.url
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-filed.png", full_page=True)
    # The access code is shown once: the same page reloaded no longer has it.
    page.reload()
    assert page.locator("[data-testid=access-code]").count() == 0
    assert code not in page.content()

    page.goto(server.url + "/lookup")
    page.fill("input[name=number]", number.lower())
    page.fill("input[name=phone]", "13812345678")
    page.fill("input[name=code]", code.lower())
    page.click("[data-testid=lookup-form] button[type=submit]")
    page.wait_for_selector("[data-testid=case-status]")
    assert code not in page.url and code.lower() not in page.url
    status = page.inner_text("[data-testid=case-status]")
    assert "已提交" in status
    assert page.inner_text("[data-testid=case-institution]") == "县矛盾纠纷多元化解中心"
    assert "提交申请" in page.inner_text("[data-testid=timeline]")
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-lookup.png", full_page=True)

    # Withdrawing needs the explicit confirmation tick.
    page.click("form[action='/lookup/withdraw'] button[type=submit]")
    assert "勾选" in page.inner_text("main")
    page.fill("textarea[name=reason]", "已与公司自行和解")
    page.check("input[name=confirm]")
    page.click("form[action='/lookup/withdraw'] button[type=submit]")
    page.wait_for_selector(".notice-ok")
    assert "已撤回" in page.inner_text("[data-testid=case-status]")
    assert page.locator("form[action='/lookup/withdraw']").count() == 0

    # A wrong code is refused with one vague message.
    other = new_page(PHONE)
    other.goto(server.url + "/lookup")
    other.fill("input[name=number]", number)
    other.fill("input[name=phone]", "13812345678")
    other.fill("input[name=code]", "ABCDEFGH")
    other.click("[data-testid=lookup-form] button[type=submit]")
    assert "不匹配" in other.inner_text("main")
    assert other.locator("[data-testid=case-status]").count() == 0


def test_intake_assigns_and_mediator_creates_a_join_link(server, new_page, artifacts):
    filed = server.file_case("楼上漏水纠纷（浏览器测试）")
    number = filed["case"]["number"]

    intake = new_page(DESKTOP)
    login(intake, server.url, "intake")
    assert intake.url.endswith("/staff/queue")
    row = intake.locator(f"li.case-item[data-number='{number}']")
    assert "楼上漏水纠纷" in row.inner_text()
    intake.screenshot(path=artifacts / "desktop-queue.png", full_page=True)
    row.locator("a").click()
    intake.wait_for_selector("[data-testid=do-accept]")
    case_url = intake.url

    # A second tab of the same officer still shows "accept"; after the first accepts, it gets a clear 409.
    stale = intake.context.new_page()
    stale.goto(case_url)
    intake.click("[data-testid=do-accept]")
    intake.wait_for_selector("[data-testid=do-assign]")
    assert "已受理" in intake.inner_text("[data-testid=case-status]")
    stale.click("[data-testid=do-accept]")
    stale.wait_for_selector("[data-testid=action-error]")
    assert "不能执行" in stale.inner_text("[data-testid=action-error]")
    stale.close()

    options = intake.locator("select[name=mediator_id] option").all_inner_texts()
    assert any("调解员 李明" in o and "在办" in o for o in options), options
    assert "在办" in intake.inner_text("[data-testid=workload]")
    intake.screenshot(path=artifacts / "desktop-case-intake.png", full_page=True)
    label = next(o for o in options if "调解员 李明" in o)
    intake.select_option("select[name=mediator_id]", label=label)
    intake.click("[data-testid=do-assign]")
    intake.wait_for_selector(".notice-ok")
    assert "已指派调解员" in intake.inner_text("[data-testid=case-status]")
    assert intake.inner_text("[data-testid=case-mediator]") == "调解员 李明"

    mediator = new_page(DESKTOP)
    mediator.goto(case_url)  # not logged in: sent to the login page, then back here
    assert "/login" in mediator.url
    mediator.fill("input[name=username]", "mediator")
    mediator.fill("input[name=password]", DEMO_PASSWORD)
    mediator.click("[data-testid=login-form] button[type=submit]")
    mediator.wait_for_url(case_url)
    mediator.fill("input[name=scheduled_at]", "2030-06-01T09:30")
    mediator.click("[data-testid=do-open-session]")
    mediator.wait_for_selector("[data-testid=do-invite]")
    assert "调解中" in mediator.inner_text("[data-testid=case-status]")
    mediator.select_option("[data-invite-form] select[name=role]", "party")
    mediator.select_option("[data-invite-form] select[name=party_id]", label="赵六 (申请人)")
    mediator.click("[data-testid=do-invite]")
    link = mediator.input_value("[data-testid=join-link]")
    assert link.startswith(server.url + "/join/"), link
    mediator.screenshot(path=artifacts / "desktop-case-mediator.png", full_page=True)

    party = new_page(PHONE)
    party.goto(link)
    # The join link opens the room's check-in, which says who is joining which case and when.
    assert party.inner_text("[data-testid=join-name]") == "赵六"
    assert party.inner_text("[data-testid=join-role]") == "当事人"
    assert number in party.inner_text("[data-testid=join-case]")
    assert party.inner_text("[data-testid=join-scheduled]") == "2030-06-01 09:30"
    no_horizontal_scroll(party)
    party.screenshot(path=artifacts / "phone-join.png", full_page=True)

    mediator.click("[data-testid^=revoke-]")
    mediator.wait_for_selector(".notice-ok")
    party.reload()
    assert party.locator("[data-testid=room-invalid]").get_attribute("data-code") == "token_revoked"
    assert "撤销" in party.inner_text("main")

    # A clerk reads the case but has no action forms.
    clerk = new_page(DESKTOP)
    login(clerk, server.url, "clerk")
    clerk.goto(case_url)
    assert clerk.locator("[data-testid=readonly]").count() == 1
    assert clerk.locator("main form[method=post]").count() == 0


def test_language_switch_renders_english(server, new_page, artifacts):
    page = new_page(PHONE)
    page.goto(server.url + "/")
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.click(".langs a[hreflang=en]")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "en"
    assert "Online dispute mediation" in page.inner_text("h1")
    assert "File a case" in page.inner_text("main")
    page.screenshot(path=artifacts / "phone-home-en.png", full_page=True)
    page.goto(server.url + "/file")  # the choice sticks (cookie)
    assert "File a case online" in page.inner_text("h1")
    assert "Labour" in page.inner_text("select[name=category]")
    assert not re.search(r"[\u4e00-\u9fff]", page.inner_text("form label[for=f-title]"))
    page.click(".langs a[hreflang=zh-CN]")
    page.wait_for_load_state()
    assert "在线申请" in page.inner_text("h1")


def test_invalid_form_is_shown_again_with_field_errors(server, new_page, artifacts, tmp_path):
    before = server.case_count()
    page = new_page(PHONE)
    page.goto(server.url + "/file")
    page.select_option("select[name=category]", "family")
    page.fill("input[name=title]", "x")
    description = "关于子女抚养费的纠纷，请求调解。"
    page.fill("textarea[name=description]", description)
    page.fill("input[name='applicant.name']", "李四")
    page.fill("input[name='applicant.phone']", "not-a-phone")
    page.click("[data-add-row=respondents]")  # row 0 stays empty (ignored), row 1 is filled in
    page.fill("input[name='respondents.1.name']", "王五")
    page.fill("input[name='respondents.1.phone']", "12")
    page.click("[data-testid=submit-case]")
    page.wait_for_selector("[data-testid=form-errors]")

    def error_of(field: str) -> str:
        return page.locator(f"#err-{field.replace('.', '-')}").inner_text()

    assert "至少" in error_of("title")
    assert "选择" in error_of("institution_id")
    assert "号码" in error_of("applicant.phone")
    assert "号码" in error_of("respondents.1.phone")  # the row the user typed in, not the n-th kept row
    assert page.input_value("textarea[name=description]") == description
    assert page.input_value("input[name='applicant.name']") == "李四"
    assert page.input_value("input[name='respondents.1.name']") == "王五"
    assert page.locator("[data-testid=access-code]").count() == 0
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-file-errors.png", full_page=True)
    assert server.case_count() == before

    # Fields fixed, but the "PNG" is really text: the upload check refuses it and nothing is created.
    page.fill("input[name=title]", "子女抚养费纠纷")
    page.select_option("select[name=institution_id]", index=1)
    page.fill("input[name='applicant.phone']", "13912345678")
    page.fill("input[name='respondents.1.phone']", "")
    fake = tmp_path / "photo.png"
    fake.write_text("this is not an image")
    page.set_input_files("input[name=evidence]", str(fake))
    page.click("[data-testid=submit-case]")
    page.wait_for_selector("[data-testid=form-errors]")
    assert "类型" in error_of("evidence")
    assert page.locator("#err-title").count() == 0
    assert server.case_count() == before


def test_every_text_of_the_portal_is_translated():
    """No browser needed: every key the templates and pages use exists in both catalogs, every
    code shown to users (statuses, categories, roles...) has a translation, and the templates
    hold no literal Chinese or English sentences."""
    from pathlib import Path

    from server.http.pages import admin, common, portal, staff
    from server.core.schemas import CASE_TYPES, CATEGORIES, EXPERT_LEVELS, INSTITUTION_KINDS, INVITE_ROLES, ROLES
    from server.core.workflow import STATUSES, TRANSITIONS

    from server.core.i18n import catalog

    root = Path(__file__).resolve().parents[2]
    # The merged catalogs (base plus every <part>.{lang}.json), as the server uses them.
    catalogs = {lang: catalog(lang) for lang in ("zh-CN", "en")}
    templates = {p: p.read_text("utf-8") for p in (root / "web" / "templates").rglob("*.html")}
    used = set()
    for text in templates.values():
        used |= set(re.findall(r"""\bt\(\s*['"]([a-zA-Z0-9_.\-]+)['"]\s*[,)]""", text))
    for pages in (common, portal, staff, admin):  # the page modules that were one portal.py
        used |= set(re.findall(r"""(?:\bt|\["t"\])\(\s*"([a-zA-Z0-9_.\-]+)"\s*[,)]""", Path(pages.__file__).read_text("utf-8")))
    used |= {k for _, k in staff.INVITE_DURATIONS} | set(common._SERVICE_FIELD_MESSAGES.values())
    codes = {"status": STATUSES, "status_help": STATUSES, "case_type": CASE_TYPES, "case_type_hint": CASE_TYPES,
             "category": CATEGORIES, "role": ROLES, "jrole": INVITE_ROLES, "inst_kind": INSTITUTION_KINDS,
             "level": EXPERT_LEVELS, "party.side": ["applicant", "respondent"],
             "session.status": ["scheduled", "live", "ended"], "do": list(TRANSITIONS),
             "chip": [name for name, _ in staff.CHIPS], "list.title": ["queue", "cases", "my"],
             "invite.state": ["active", "expired", "revoked", "used"],
             "flash": ["accept", "reject", "transfer", "assign", "archive", "close", "session"],
             "action.case": ["filed", *[a for a in TRANSITIONS if a != "withdraw"], "withdraw"],
             "error.title": ["400", "401", "403", "404", "405", "409", "410", "422", "429", "500"]}
    for prefix, values in codes.items():
        used |= {f"{prefix}.{v}" for v in values}
    used |= {f"home.step{i}.{part}" for i in range(1, 6) for part in ("title", "text")}
    for lang, cat in catalogs.items():
        missing = sorted(k for k in used if k not in cat)
        assert not missing, f"{lang} lacks {missing}"
    assert set(catalogs["zh-CN"]) == set(catalogs["en"])
    for path, text in templates.items():
        visible = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|<[^>]+>", " ", text, flags=re.S)
        assert not re.search(r"[\u4e00-\u9fff]", visible), f"Chinese text in {path.name}"
        words = re.findall(r"[A-Za-z]{3,}(?:\s+[A-Za-z]{3,})+", visible)
        assert not words, f"English text in {path.name}: {words}"
