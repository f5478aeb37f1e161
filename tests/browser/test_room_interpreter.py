"""An interpreter in real browser pages (docs/procedure.md, "Interpreters and support persons"): the
mediator makes the interpreter's link on the case page (role and the party they accompany), the
interpreter passes the confidentiality notice on a phone and waits in the lobby; admitting the party
lets both in; the mediator moves the party into a caucus and the interpreter's page shows the caucus
and the party's tile, while the others' tiles of the interpreter read "译员 · 陪同 <party>"."""
from __future__ import annotations

from tests.browser.conftest import DESKTOP, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import open_room, wait_decoding, wait_js
from tests.browser.test_room import enter, my_id, no_horizontal_scroll, pass_steps, room_browser, room_page, tile, wait_screen  # noqa: F401
from tests.browser.test_portal import login

PHONE = {"width": 390, "height": 844}


def test_the_interpreter_follows_the_party_into_a_caucus(server, room_page, artifacts):  # noqa: F811
    links = open_room(server, "劳务费纠纷（译员测试）")
    party_name = links.party_names[0]

    # The mediator's case page: the link form offers the interpreter with a picker of the parties.
    staff = room_page(PHONE, label="staff")
    case_url = f"{server.url}/staff/cases/{links.case_id}"
    login(staff, server.url, "mediator", next_path=f"/staff/cases/{links.case_id}")
    staff.goto(case_url)
    form = f"#session-{links.session_id} [data-invite-form]"
    staff.click(f"#session-{links.session_id} details:has([data-invite-form]) > summary")  # links exist: folded
    staff.select_option(f"{form} select[name=role]", "interpreter")
    assert staff.is_visible(f"{form} select[name=party_id]") and staff.is_visible(f"{form} input[name=name]")
    assert not staff.is_visible(f"{form} select[name=expert_id]")
    staff.locator(form).screenshot(path=artifacts / "phone-invite-form-interpreter.png")
    staff.click(f"{form} [data-testid=do-invite]")  # no party, no name: refused, nothing made
    staff.wait_for_selector(f"{form} .has-error")
    staff.select_option(f"{form} select[name=role]", "interpreter")
    staff.select_option(f"{form} select[name=party_id]", label=f"{party_name} (申请人)")
    staff.fill(f"{form} input[name=name]", "王译")
    staff.click(f"{form} [data-testid=do-invite]")
    link = staff.input_value("[data-testid=join-link]")
    assert "/join/" in link, link
    assert f"译员 · 陪同 {party_name}" in staff.inner_text(f"#session-{links.session_id} table.invites")
    no_horizontal_scroll(staff)
    staff.locator(f"#session-{links.session_id} table.invites").screenshot(
        path=artifacts / "phone-invite-interpreter.png")
    itoken = link.split("/join/", 1)[1]

    mediator = room_page(DESKTOP, label="mediator")
    party = room_page(PHONE, label="party")
    interp = room_page(PHONE, label="interpreter")
    mediator.goto(server.url + links.path(links.mediator_token))
    party.goto(server.url + links.path(links.party_tokens[0]))
    interp.goto(server.url + links.path(itoken))
    assert interp.inner_text("[data-testid=join-role]") == f"译员 · 陪同 {party_name}"
    enter(mediator)
    wait_screen(mediator, "room")
    mid = my_id(mediator)
    enter(party)
    wait_screen(party, "lobby")
    pa = my_id(party)
    # The interpreter's steps: the confidentiality notice only.
    wait_js(interp, "document.querySelector('#self-video').videoWidth > 0", "own preview")
    interp.click("[data-testid=enter]")
    wait_screen(interp, "step")
    body = interp.inner_text("#step-body")
    assert "保密义务" in body and "第二十九条" in body and "第十八条" not in body and "虚假调解" not in body, body
    assert len(pass_steps(interp)) == 1  # no consent step: that is the party's
    wait_screen(interp, "lobby")
    pi = my_id(interp)
    if not mediator.is_visible("[data-testid=lobby-list]"):
        mediator.click("[data-testid=manage-toggle]")
    row = mediator.locator(f"[data-testid=lobby-list] li[data-pid='{pi}']")
    row.wait_for()
    assert f"译员 · 陪同 {party_name}" in row.inner_text()

    # Admitting the party lets the interpreter in with it.
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pa}']")
    wait_screen(party, "room")
    wait_screen(interp, "room")
    mediator.locator(tile(pi)).wait_for()
    assert mediator.inner_text(f"{tile(pi)} .tile-role") == f"译员 · 陪同 {party_name}"
    wait_decoding(interp, "the interpreter decodes video", timeout=15)

    # The mediator moves the party into a caucus: the interpreter goes along.
    mediator.fill("#caucus-name", "与申请人背对背")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与申请人背对背')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pa}']", label="与申请人背对背")
    interp.wait_for_selector("[data-testid=area-banner]:has-text('与申请人背对背')")
    party.wait_for_selector("[data-testid=area-banner]:has-text('与申请人背对背')")
    interp.locator(tile(pa)).wait_for()  # the party's tile, in the caucus
    assert interp.locator(tile(mid)).count() == 0  # the mediator is still in the main area
    party.locator(tile(pi)).wait_for()
    assert party.inner_text(f"{tile(pi)} .tile-role") == f"译员 · 陪同 {party_name}"
    wait_js(interp, f"""(() => {{ const v = document.querySelector("{tile(pa)} video");
        return !!v && v.getVideoPlaybackQuality().totalVideoFrames > 0; }})()""",
            "the interpreter sees the party's video in the caucus", timeout=15)
    no_horizontal_scroll(interp)
    assert interp.is_visible("[data-testid=help]")  # they may ask for help like the party
    interp.screenshot(path=artifacts / "phone-interpreter-caucus.png")
    party.screenshot(path=artifacts / "phone-party-with-interpreter.png")

    # Alone, the interpreter has no area of their own: the mediator's list says they move with the
    # party (the server refuses such a move: tests/procedure/test_accompanying.py).
    assert mediator.locator(f"[data-testid=people-list] [data-testid=move][data-pid='{pi}']").count() == 0
    assert mediator.inner_text(f"[data-testid=people-list] [data-testid=moves-with][data-pid='{pi}']") == \
        f"随{party_name}移动"
    assert interp.locator("[data-testid=area-banner]:has-text('与申请人背对背')").count() == 1
