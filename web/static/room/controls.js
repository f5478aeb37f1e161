/* The mediator's controls in the manage panel: the lobby (admit, deny with a reason, a toast
 * when someone starts waiting), everyone inside (mute, move to an area, remove), the caucuses
 * (create, go there, back to the main room). Every action is one acknowledged event (act);
 * on a refusal the panel is redrawn from the state. */
import { t, $, h, roleLabel } from "./dom.js";
import { R, canManage, lobbyPeople, myWhere, areaName } from "./state.js";
import { toast, showError } from "./toasts.js";
import { sideShows } from "./screen.js";
import { call } from "./signal.js";
import { recView } from "./recording.js";

export async function act(event, data, okText) {
  var ack = await call(event, data);
  if (!ack.ok) { showError(ack.error); renderManage(true); return null; }
  if (okText) { toast(okText, { kind: "ok" }); }
  return ack;
}
function admit(pid) { return act("lobby.admit", { participant_id: pid }); }

export function onLobbyWaiting(data) {
  if (!data || sideShows("manage")) { return; }   // the open list shows it already
  toast(t("room.lobby.waiting_notice", { name: data.name, role: roleLabel(data.role) }), { kind: "warn", ms: 15000, key: "lobby:" + data.participant_id,
    action: { label: t("room.manage.admit"), run: function () { admit(data.participant_id); } } });
}

var manageSig = "";
export function renderManage(force) {
  if (!canManage() || !R.state) { return; }
  var sig = JSON.stringify([R.state.participants, R.state.caucuses, R.state.recording, R.me && R.me.id]);
  if (!force && sig === manageSig) { return; }
  manageSig = sig;
  var caucuses = R.state.caucuses || [];

  var lobbyList = $("#lobby-list");
  lobbyList.textContent = "";
  var waiting = lobbyPeople();
  waiting.forEach(function (p) {
    lobbyList.appendChild(h("li", { className: "prow lobby", "data-pid": p.id },
      h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: p.name }), h("span", { className: "chip", text: roleLabel(p.role) })),
      h("div", { className: "prow-actions" },
        h("button", { type: "button", className: "btn btn-primary btn-small", "data-testid": "admit", "data-pid": p.id, text: t("room.manage.admit"),
          onclick: function () { admit(p.id); } }),
        h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "deny", text: t("room.manage.deny"),
          onclick: function () {
            var reason = window.prompt(t("room.manage.deny_reason", { name: p.name }), "");
            if (reason === null) { return; }
            var data = { participant_id: p.id };
            if (reason.trim()) { data.reason = reason.trim().slice(0, 300); }
            act("lobby.deny", data);
          } }))));
  });
  $("#lobby-empty").hidden = waiting.length > 0;

  var peopleList = $("#people-list");
  peopleList.textContent = "";
  var inside = R.state.participants.filter(function (p) { return p.where !== "lobby"; });
  inside.forEach(function (p) {
    var isMe = R.me && p.id === R.me.id;
    var chips = [h("span", { className: "chip", text: roleLabel(p.role) }), h("span", { className: "chip chip-where", text: areaName(p.where) })];
    if (p.muted && p.muted.audio) { chips.push(h("span", { className: "chip chip-warn", text: t("room.tile.muted") })); }
    if (p.muted && p.muted.video) { chips.push(h("span", { className: "chip chip-warn", text: t("room.tile.cam_off") })); }
    var consent = recView().consent || {};
    if (consent[p.id]) { chips.push(h("span", { className: "chip chip-where", "data-testid": "consent", text: t("room.rec.consent." + consent[p.id]) })); }
    var actions = h("div", { className: "prow-actions" });
    if (!isMe) {
      actions.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "mute-audio", "data-pid": p.id,
        text: t("room.manage.mute_audio"), disabled: !!(p.muted && p.muted.audio),
        onclick: function () { act("participant.mute", { participant_id: p.id, kind: "audio" }); } }));
      actions.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "mute-video", "data-pid": p.id,
        text: t("room.manage.mute_video"), disabled: !!(p.muted && p.muted.video),
        onclick: function () { act("participant.mute", { participant_id: p.id, kind: "video" }); } }));
    }
    var sel = h("select", { "aria-label": t("room.manage.move_to", { name: p.name }), "data-testid": "move", "data-pid": p.id });
    sel.appendChild(h("option", { value: "main", text: t("room.where.main"), selected: p.where === "main" }));
    caucuses.forEach(function (c) { sel.appendChild(h("option", { value: c.id, text: c.name, selected: p.where === c.id })); });
    sel.addEventListener("change", function () {
      act("participant.move", { participant_id: p.id, to: sel.value }, t("room.manage.moved", { name: p.name, where: areaName(sel.value) }));
    });
    actions.appendChild(h("label", { className: "small muted" }, t("room.manage.move") + " "));
    actions.appendChild(sel);
    if (!isMe) {
      actions.appendChild(h("button", { type: "button", className: "btn btn-danger btn-small", "data-testid": "remove", "data-pid": p.id,
        text: t("room.manage.remove"),
        onclick: function () {
          if (!window.confirm(t("room.manage.remove_confirm", { name: p.name }))) { return; }
          act("participant.remove", { participant_id: p.id });
        } }));
    }
    peopleList.appendChild(h("li", { className: "prow", "data-pid": p.id },
      h.apply(null, ["div", { className: "prow-head" }, h("span", { className: "prow-name", text: isMe ? p.name + " (" + t("room.you") + ")" : p.name })].concat(chips)),
      actions));
  });

  var clist = $("#caucus-list");
  clist.textContent = "";
  caucuses.forEach(function (c) {
    var members = R.state.participants.filter(function (p) { return p.where === c.id; }).map(function (p) { return p.name; });
    var row = h("li", { className: "crow", "data-caucus": c.id },
      h("span", null, h("strong", { text: c.name }), " ", h("span", { className: "muted small", text: members.length ? members.join("、") : t("room.manage.caucus_empty") })));
    if (myWhere() !== c.id) {
      row.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", text: t("room.manage.go_there"),
        onclick: function () { act("participant.move", { participant_id: R.me.id, to: c.id }); } }));
    } else {
      row.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", text: t("room.manage.back_main"),
        onclick: function () { act("participant.move", { participant_id: R.me.id, to: "main" }); } }));
    }
    clist.appendChild(row);
  });
}

export function wireControls() {
  $("#caucus-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var input = $("#caucus-name");
    var n = ((R.state && R.state.caucuses) || []).length + 1;
    var name = input.value.trim() || t("room.manage.caucus_default", { n: n });
    var ack = await act("caucus.create", { name: name }, t("room.manage.caucus_created", { name: name }));
    if (ack) { input.value = ""; }
  });
}
