/* Raised hands (docs/protocol.md, hand.raise / hand.lower): everyone admitted but the mediator has
 * a hand button in the control bar; a raised hand shows on the tile (with its place in the queue);
 * the mediator sees the queue in raise order in the manage panel, is told of each new hand, and
 * lowers hands. room.state's `hands` is the queue, each participant's `hand` its raise. */
import { t, $, $all, h } from "./dom.js";
import { R, canManage, person, myWhere, areaName } from "./state.js";
import { toast, showError } from "./toasts.js";
import { openSide, sideShows } from "./screen.js";
import { call } from "./signal.js";

function handIcon() {   // the control bar's hand (room.html's icon macro), for the tiles
  var icon = $("#hand-btn svg");
  return icon ? icon.cloneNode(true) : document.createTextNode("");
}

function queue() { return (R.state && R.state.hands) || []; }
function myHand() { var me = R.me && person(R.me.id); return !!(me && me.hand); }

async function lower(pid) {
  var ack = await call("hand.lower", pid ? { participant_id: pid } : {});
  if (!ack.ok) { showError(ack.error); }
}

function render() {
  var btn = $("#hand-btn");
  if (btn) {
    var up = myHand();
    btn.hidden = !R.me || canManage() || R.me.role === "observer";
    btn.setAttribute("data-raised", up ? "true" : "false");
    btn.querySelector("span").textContent = t(up ? "room.hand.lower" : "room.hand.raise");
    btn.setAttribute("aria-label", t(up ? "room.hand.lower" : "room.hand.raise"));
  }
  var hands = queue();
  $all("#grid .tile[data-pid]").forEach(function (tile) {
    var pid = tile.getAttribute("data-pid");
    var place = hands.indexOf(pid);
    var mark = tile.querySelector(".tile-hand");
    if (place < 0) { if (mark) { mark.remove(); } return; }
    if (!mark) {
      mark = h("span", { className: "tile-hand", "data-testid": "tile-hand", role: "img" }, handIcon(), h("b"));
      tile.appendChild(mark);
    }
    mark.querySelector("b").textContent = canManage() ? String(place + 1) : "";
    mark.setAttribute("aria-label", t("room.hand.on_tile"));
  });
  var box = $("#hand-queue");
  if (!box) { return; }
  box.hidden = !canManage() || !hands.length;
  var list = box.querySelector("ol");
  list.textContent = "";
  hands.forEach(function (pid) {
    var p = person(pid);
    if (!p) { return; }
    list.appendChild(h("li", { className: "prow", "data-testid": "hand-row", "data-pid": pid },
      h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: p.name }),
        p.where !== myWhere() ? h("span", { className: "chip chip-where", text: areaName(p.where) }) : null),
      h("div", { className: "prow-actions" }, h("button", { type: "button", className: "btn btn-secondary btn-small",
        "data-testid": "hand-lower", "data-pid": pid, text: t("room.hand.lower_for"), onclick: function () { lower(pid); } }))));
  });
  box.querySelector("h3 .count").textContent = hands.length ? String(hands.length) : "";
}

function onRaised(data) {
  if (!data || sideShows("manage")) { return; }
  toast(t("room.hand.raised", { name: data.name }), { kind: "warn", ms: 8000,
    action: { label: t("room.help.show"), run: function () { openSide("manage"); } } });
}

export function wireHands() {
  var btn = $("#hand-btn");
  if (btn) {
    btn.addEventListener("click", async function () {
      var ack = myHand() ? await call("hand.lower", {}) : await call("hand.raise", {});
      if (!ack.ok) { showError(ack.error); return; }
      if (R.state) { R.state.hands = ack.hands; }
      var up = (ack.hands || []).indexOf(R.me.id) >= 0;
      toast(t(up ? "room.hand.raised_me" : "room.hand.lowered_me"), { kind: "ok", ms: 2500 });
    });
  }
  var help = $("#help-list");
  if (help) {
    help.parentNode.insertBefore(h("section", { id: "hand-queue", className: "hand-queue", "data-testid": "hand-queue", hidden: true },
      h("h3", null, t("room.hand.queue") + " ", h("span", { className: "count" })), h("ol", { className: "plist" })), help.nextSibling);
  }
  document.addEventListener("room:state", render);
  document.addEventListener("room:socket", function (ev) { ev.detail.on("hand.raised", onRaised); });
}
