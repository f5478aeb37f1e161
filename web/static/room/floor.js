/* Who has the floor (docs/protocol.md, participant.mute_all / participant.release, speaker.active):
 * the mediator mutes everyone but themself, with or without holding them muted, and releases
 * them; a held participant's microphone button shows the lock (the server refuses their unmute);
 * the tile of the area's active speaker (from the audio levels the server reads) is highlighted. */
import { t, $, $all, h } from "./dom.js";
import { R, canManage, person } from "./state.js";
import { toast, showError } from "./toasts.js";
import { call } from "./signal.js";

var speaker = null;

async function muteAll(hold) {
  var ack = await call("participant.mute_all", { hold: hold });
  if (!ack.ok) { showError(ack.error); return; }
  toast(t(hold ? "room.floor.muted_held" : "room.floor.muted", { n: (ack.muted || []).length }), { kind: "ok" });
}
async function release(pid) {
  var ack = await call("participant.release", pid ? { participant_id: pid } : {});
  if (!ack.ok) { showError(ack.error); return; }
  toast(t("room.floor.released_all"), { kind: "ok" });
}

function held() { return R.state ? R.state.participants.filter(function (p) { return p.held; }) : []; }

function render() {
  var me = R.me && person(R.me.id);
  var locked = !!(me && me.held);
  $all("[data-toggle=audio]").forEach(function (btn) {
    btn.classList.toggle("held", locked);
    if (locked) { btn.title = t("room.floor.you_held"); } else { btn.removeAttribute("title"); }
  });
  var box = $("#floor-box");
  if (box) {
    box.hidden = !canManage();
    box.querySelector("[data-testid=release-all]").hidden = !held().length;
  }
  document.querySelectorAll("#people-list li.prow[data-pid]").forEach(function (li) {
    var p = person(li.getAttribute("data-pid"));
    var chip = li.querySelector("[data-testid=held-chip]");
    if (p && p.held && !chip) {
      li.querySelector(".prow-head").appendChild(h("span", { className: "chip chip-warn", "data-testid": "held-chip", text: t("room.floor.held") }));
      li.querySelector(".prow-actions").appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small",
        "data-testid": "release", "data-pid": p.id, text: t("room.floor.release"), onclick: function () { release(p.id); } }));
    }
  });
  showSpeaker();
}

function showSpeaker() {
  $all("#grid .tile[data-pid]").forEach(function (tile) { tile.classList.toggle("speaking", tile.getAttribute("data-pid") === speaker); });
  var self = $("#self-tile");
  if (self) { self.classList.toggle("speaking", !!(R.me && speaker === R.me.id)); }
  R.speaker = speaker;
}

function onSpeaker(data) {
  if (!data) { return; }
  speaker = data.participant_id || null;
  showSpeaker();
}
function onMuted(data) {
  if (data && data.hold) { toast(t("room.floor.you_held"), { kind: "warn", ms: 9000 }); }
}
function onReleased() { toast(t("room.floor.you_released"), { kind: "ok", ms: 6000 }); }

export function wireFloor() {
  var anchor = $("#people-list");
  if (anchor) {
    anchor.parentNode.insertBefore(h("div", { id: "floor-box", className: "floor-box", "data-testid": "floor", hidden: true },
      h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "mute-all", text: t("room.floor.mute_all"),
        onclick: function () { muteAll(false); } }),
      h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "mute-all-hold", text: t("room.floor.mute_all_hold"),
        onclick: function () { muteAll(true); } }),
      h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "release-all", hidden: true,
        text: t("room.floor.release_all"), onclick: function () { release(null); } })), anchor);
    new MutationObserver(render).observe(anchor, { childList: true });
  }
  document.addEventListener("room:state", function () {
    if (R.state && R.state.speakers && R.me) {
      var me = person(R.me.id);
      if (me && R.state.speakers[me.where] !== undefined) { speaker = R.state.speakers[me.where]; }
    }
    render();
  });
  document.addEventListener("room:socket", function (ev) {
    ev.detail.on("speaker.active", onSpeaker);
    ev.detail.on("muted", onMuted);
    ev.detail.on("released", onReleased);
  });
}
