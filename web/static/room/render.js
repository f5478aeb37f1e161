/* A room.state (pushed by the server, or the join ack's copy) applied to the page: R.state,
 * lobby or room screen (with the admission time and toast), the caucus banner, lobby toasts
 * that no longer apply, then every view drawn from the state: grid, audio only, my link's
 * quality, manage panel, recording, controls. */
import { t, $, now } from "./dom.js";
import { R, myWhere, canManage, person } from "./state.js";
import { toast, keyedToasts, dropToast } from "./toasts.js";
import { setScreen, openSide, updateControls } from "./screen.js";
import { renderGrid } from "./grid.js";
import { renderManage, renderAudioOnly, noticeDevices } from "./controls.js";
import { noteOwnQuality } from "./quality.js";
import { renderRecording } from "./recording.js";

var manageOpened = false;

export function renderState(state) {
  if (!state) { return; }
  R.state = state;
  var where = myWhere();
  if (where === null) { return; }
  if (where === "lobby") {
    R.inLobby = true;
    setScreen("lobby");
    var present = state.mediator_present;
    if (present === undefined) { present = state.participants.some(function (p) { return p.role === "mediator"; }); }
    $("#lobby-mediator").textContent = t(present ? "room.lobby.mediator_present" : "room.lobby.mediator_absent");
  } else {
    if (R.inLobby) {
      R.inLobby = false;
      R.admittedAt = now();
      toast(t("room.admitted"), { kind: "ok", ms: 3000 });
    }
    if (R.agreement && !R.agreementLoaded) { R.agreementLoaded = true; R.agreement.refresh(); }
    if (R.screen !== "room") {
      setScreen("room");
      // Wide screens: the mediator sees the controls at once; everybody else keeps the grid wide.
      if (canManage() && !manageOpened && window.matchMedia && window.matchMedia("(min-width: 1000px)").matches) {
        manageOpened = true;
        openSide("manage");
      }
    }
  }
  var banner = $("#area-banner");
  var caucus = (state.caucuses || []).find(function (c) { return c.id === where; });
  if (caucus) {
    banner.textContent = t("room.in_caucus", { name: caucus.name });
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  // "X is waiting" notices go away once X is let in, refused or gone.
  keyedToasts.forEach(function (_node, key) {
    if (key.indexOf("lobby:") === 0) {
      var p = person(key.slice(6));
      if (!p || p.where !== "lobby") { dropToast(key); }
    }
    if (key.indexOf("device:") === 0 && !(state.devices_waiting || []).some(function (d) { return "device:" + d.participant_id === key; })) {
      dropToast(key);
    }
  });
  renderGrid();
  renderAudioOnly();
  noteOwnQuality();
  renderManage();
  noticeDevices(state);
  renderRecording();
  updateControls();
  // The room tools (transcript.js, lobbytools.js, hands.js, floor.js, caucustools.js) draw their parts.
  document.dispatchEvent(new CustomEvent("room:state"));
}
