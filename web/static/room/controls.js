/* The room's controls beyond mic and camera: the audio-only switch in the control bar (everyone:
 * media.audio_only, shown from room.state's audio_only, kept over a reload), and the mediator's
 * controls in the manage panel: the lobby (admit, deny with a reason, a toast when someone starts
 * waiting), everyone inside (mute, move to an area, remove), the caucuses (create, go there, back
 * to the main room). Every action is one acknowledged event (act); on a refusal the panel is
 * redrawn from the state. */
import { CFG } from "./config.js";
import { t, $, h, roleLabel, personLabel } from "./dom.js";
import { R, canManage, lobbyPeople, myWhere, areaName } from "./state.js";
import { toast, showError, dropToast } from "./toasts.js";
import { sideShows } from "./screen.js";
import { call, isJoined } from "./signal.js";
import { recView } from "./recording.js";
import { renderGrid } from "./grid.js";
import { takeMinutes } from "./caucustools.js";

// ------------------------------------------------------------------ audio only

// What I asked for (kept over a reload of this link); room.state's audio_only is what the server does.
var AUDIO_ONLY_KEY = CFG ? "mediation-room-audio-only:" + CFG.token.slice(-24) : null;
var audioOnlyWanted = false;
try { audioOnlyWanted = !!AUDIO_ONLY_KEY && sessionStorage.getItem(AUDIO_ONLY_KEY) === "1"; } catch (e) { /* private mode */ }
var audioOnlyBusy = false;

function keepWanted(on) {
  audioOnlyWanted = on;
  try { if (on) { sessionStorage.setItem(AUDIO_ONLY_KEY, "1"); } else { sessionStorage.removeItem(AUDIO_ONLY_KEY); } } catch (e) { /* private mode */ }
}

/** No video is forwarded to me: the server's word once it has said it, else what I asked for. */
export function audioOnlyOn() {
  return R.state && typeof R.state.audio_only === "boolean" ? R.state.audio_only : audioOnlyWanted;
}

/** Before joining (the check-in's "enter with audio only"): ask for it as soon as I am in. */
export function wantAudioOnly(on) { keepWanted(on); renderAudioOnly(); }

/** Switch audio only on or off (media.audio_only); the room.state that follows shows it. */
export async function setAudioOnly(on) {
  if (audioOnlyBusy) { return false; }
  var before = audioOnlyWanted;
  keepWanted(on);
  if (!isJoined()) { renderAudioOnly(); return true; }
  audioOnlyBusy = true;
  var ack;
  try { ack = await call("media.audio_only", { on: on }); } finally { audioOnlyBusy = false; }
  if (!ack.ok) { keepWanted(before); showError(ack.error); renderAudioOnly(); return false; }
  if (R.state && ack.audio_only !== undefined) { R.state.audio_only = !!ack.audio_only; }
  dropToast("quality-prompt");
  toast(t(on ? "room.audio_only.on" : "room.audio_only.off"), { kind: "ok", ms: 4000, key: "audio-only" });
  renderAudioOnly();
  renderGrid();
  return true;
}

/** After every join (a reload, a reconnect): the server starts everyone with video. */
export function afterJoin() {
  if (audioOnlyWanted) {
    call("media.audio_only", { on: true }).then(function (ack) { if (!ack.ok) { showError(ack.error); } });
  }
}

export function renderAudioOnly() {
  var btn = $("#audio-only-btn");
  var on = audioOnlyOn();
  btn.setAttribute("aria-pressed", on ? "true" : "false");
  btn.setAttribute("aria-label", t(on ? "room.audio_only.turn_off" : "room.audio_only.turn_on"));
  btn.title = t(on ? "room.audio_only.turn_off" : "room.audio_only.turn_on");
}

// ------------------------------------------------------------------ the mediator's panel

export async function act(event, data, okText) {
  var ack = await call(event, data);
  if (!ack.ok) { showError(ack.error); renderManage(true); return null; }
  if (okText) { toast(okText, { kind: "ok" }); }
  return ack;
}
function admit(pid) { return act("lobby.admit", { participant_id: pid }); }

var devicesSeen = {};
/** A toast for each device that starts waiting (the manage panel lists them too). */
export function noticeDevices(state) {
  if (!canManage()) { return; }
  var now = {};
  (state.devices_waiting || []).forEach(function (d) {
    now[d.participant_id] = true;
    if (devicesSeen[d.participant_id] || sideShows("manage")) { return; }
    toast(t("room.device.waiting_notice", { name: d.name, role: roleLabel(d.role) }), { kind: "warn", ms: 15000, key: "device:" + d.participant_id,
      action: { label: t("room.manage.device_admit"), run: function () { act("device.admit", { participant_id: d.participant_id }); } } });
  });
  devicesSeen = now;
}

export function onLobbyWaiting(data) {
  if (!data || sideShows("manage")) { return; }   // the open list shows it already
  toast(t("room.lobby.waiting_notice", { name: data.name, role: personLabel(data) }), { kind: "warn", ms: 15000, key: "lobby:" + data.participant_id,
    action: { label: t("room.manage.admit"), run: function () { admit(data.participant_id); } } });
}

var manageSig = "";
export function renderManage(force) {
  if (!canManage() || !R.state) { return; }
  var devices = R.state.devices_waiting || [];
  var sig = JSON.stringify([R.state.participants, R.state.caucuses, R.state.recording, devices, R.me && R.me.id]);
  if (!force && sig === manageSig) { return; }
  manageSig = sig;
  var caucuses = R.state.caucuses || [];

  var lobbyList = $("#lobby-list");
  lobbyList.textContent = "";
  var waiting = lobbyPeople();
  waiting.forEach(function (p) {
    lobbyList.appendChild(h("li", { className: "prow lobby", "data-pid": p.id },
      h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: p.name }), h("span", { className: "chip", text: personLabel(p) })),
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
  // The same link asking to enter from another device (docs/protocol.md, "One device per link").
  devices.forEach(function (d) {
    lobbyList.appendChild(h("li", { className: "prow lobby", "data-pid": d.participant_id, "data-testid": "device-row" },
      h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: d.name }),
        h("span", { className: "chip", text: roleLabel(d.role) }), h("span", { className: "chip chip-warn", text: t("room.manage.second_device") })),
      h("div", { className: "prow-actions" },
        h("button", { type: "button", className: "btn btn-primary btn-small", "data-testid": "device-admit", "data-pid": d.participant_id,
          text: t("room.manage.device_admit"), onclick: function () { act("device.admit", { participant_id: d.participant_id }); } }),
        h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "device-deny", "data-pid": d.participant_id,
          text: t("room.manage.device_deny"), onclick: function () { act("device.deny", { participant_id: d.participant_id }); } }))));
  });
  $("#lobby-empty").hidden = waiting.length + devices.length > 0;

  var peopleList = $("#people-list");
  peopleList.textContent = "";
  var inside = R.state.participants.filter(function (p) { return p.where !== "lobby"; });
  inside.forEach(function (p) {
    var isMe = R.me && p.id === R.me.id;
    var chips = [h("span", { className: "chip", text: personLabel(p) }), h("span", { className: "chip chip-where", text: areaName(p.where) })];
    if (p.muted && p.muted.audio) { chips.push(h("span", { className: "chip chip-warn", text: t("room.tile.muted") })); }
    if (p.muted && p.muted.video) {
      chips.push(h("span", { className: "chip chip-warn", text: t(p.video_off_reason === "bandwidth" ? "room.tile.peer_audio_only" : "room.tile.cam_off") }));
    }
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
    if (p.accompanies) {
      // An interpreter or support person goes where their party goes (docs/procedure.md): no area of their own.
      actions.appendChild(h("span", { className: "small muted", "data-testid": "moves-with", "data-pid": p.id,
        text: t("room.manage.moves_with", { party: p.accompanies_name || "" }) }));
    } else {
      var sel = h("select", { "aria-label": t("room.manage.move_to", { name: p.name }), "data-testid": "move", "data-pid": p.id });
      sel.appendChild(h("option", { value: "main", text: t("room.where.main"), selected: p.where === "main" }));
      caucuses.forEach(function (c) { sel.appendChild(h("option", { value: c.id, text: c.name, selected: p.where === c.id })); });
      sel.addEventListener("change", function () {
        act("participant.move", { participant_id: p.id, to: sel.value }, t("room.manage.moved", { name: p.name, where: areaName(sel.value) }));
      });
      actions.appendChild(h("label", { className: "small muted" }, t("room.manage.move") + " "));
      actions.appendChild(sel);
    }
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
  $("#audio-only-btn").addEventListener("click", function () { setAudioOnly(!audioOnlyOn()); });
  renderAudioOnly();
  $("#caucus-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var input = $("#caucus-name");
    var n = ((R.state && R.state.caucuses) || []).length + 1;
    var name = input.value.trim() || t("room.manage.caucus_default", { n: n });
    var data = { name: name }, minutes = takeMinutes();
    if (minutes) { data.minutes = minutes; }
    var ack = await act("caucus.create", data, t("room.manage.caucus_created", { name: name }));
    if (ack) { input.value = ""; }
  });
}
