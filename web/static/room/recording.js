/* Recording, only with everyone's consent: the badge and the mediator's start/stop
 * (recording.start asks everyone first), the consent prompt each participant answers
 * (recording.consent_request -> recording.consent), and the notice when someone refuses. */
import { t, $ } from "./dom.js";
import { R } from "./state.js";
import { toast, showError } from "./toasts.js";
import { call } from "./signal.js";
import { act } from "./controls.js";

/** The state's recording field as an object ({active, pending, consent}); a bare true means active. */
export function recView() {
  var r = R.state && R.state.recording;
  if (r === true) { return { active: true }; }
  return r && typeof r === "object" ? r : { active: false };
}
export function renderRecording() {
  var rv = recView();
  var badge = $("#rec-badge");
  badge.hidden = !(rv.active || rv.pending);
  badge.classList.toggle("pending", !rv.active && !!rv.pending);
  badge.textContent = t(rv.active ? "room.rec.on" : "room.rec.pending");
  $("#rec-status").textContent = t(rv.active ? "room.rec.status_on" : (rv.pending ? "room.rec.status_pending" : "room.rec.status_off"));
  $("#rec-toggle").textContent = t(rv.active ? "room.rec.stop" : (rv.pending ? "room.rec.cancel" : "room.rec.start"));
}
export function onRecordingAsk() { $("#rec-ask").hidden = false; $("#rec-yes").focus(); }
async function answerRecording(agree) {
  $("#rec-ask").hidden = true;
  var ack = await call("recording.consent", { agree: agree });
  if (!ack.ok) { showError(ack.error); }
}
export function onRecordingRefused(data) {
  toast(t("room.rec.refused", { name: (data && data.name) || "" }), { kind: "warn", ms: 8000 });
}

export function wireRecording() {
  $("#rec-toggle").addEventListener("click", async function () {
    var rv = recView();
    if (rv.active || rv.pending) {
      if (!window.confirm(t("room.rec.stop_confirm"))) { return; }
      await act("recording.stop", {});
    } else {
      await act("recording.start", {}, t("room.rec.asked"));
    }
  });
  $("#rec-yes").addEventListener("click", function () { answerRecording(true); });
  $("#rec-no").addEventListener("click", function () { answerRecording(false); });
}
