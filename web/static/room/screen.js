/* Which screen shows (check-in, step, lobby, room, message) and where the self view and the
 * device choice sit on each; the side panel (chat, manage, devices, agreement tabs); and which
 * controls show for my grants, with their badges. */
import { CFG } from "./config.js";
import { t, $, $all } from "./dom.js";
import { R, canManage, grants, lobbyPeople } from "./state.js";
import { markChatRead } from "./chat.js";
import { helpCount } from "./help.js";

var body = document.body;
var selfTile = $("#self-tile");
var selfVideo = $("#self-video");
var devicesBox = $("#devices");

export function setScreen(name) {
  R.screen = name;
  body.setAttribute("data-screen", name);
  var slot = name === "room" ? "room" : (name === "lobby" ? "lobby" : (name === "precheck" || name === "connecting" ? "precheck" : null));
  if (slot) {
    var target = $("[data-slot=" + slot + "]");
    if (target && selfTile.parentNode !== target) { target.appendChild(selfTile); playQuietly(selfVideo); }
  }
  // The device choice lives in the check-in card before entering and in the side panel afterwards.
  var card = $("#screen-precheck .card");
  if (name === "precheck" || name === "connecting") {
    if (devicesBox.parentNode !== card) { card.insertBefore(devicesBox, $("#screen-precheck .actions")); }
  } else if (devicesBox.parentNode !== $(".slot-devices")) {
    $(".slot-devices").appendChild(devicesBox);
  }
  if (name !== "room" && name !== "lobby") { closeSide(); }
  updateControls();
}

export function playQuietly(video) {
  if (video && video.srcObject && video.paused) { var p = video.play(); if (p && p.catch) { p.catch(function () {}); } }
}

export function updateControls() {
  var manage = canManage();
  // Parties ask for help, and so do those who accompany one (docs/procedure.md).
  var help = ["party", "interpreter", "support"].indexOf(R.me ? R.me.role : CFG.role) >= 0;
  $all("[data-needs=manage]").forEach(function (n) { n.hidden = !manage; });
  $all("[data-needs=help]").forEach(function (n) { n.hidden = !help; });
  $all("[data-needs=record]").forEach(function (n) { n.hidden = grants().indexOf("record") < 0; });
  var lobbyCount = lobbyPeople().length + ((canManage() && R.state && R.state.devices_waiting) || []).length;
  var badge = $(".controls [data-open=manage] .badge");
  badge.textContent = String(lobbyCount + helpCount());
  badge.hidden = !(lobbyCount + helpCount());
  $("#lobby-count").textContent = lobbyCount ? String(lobbyCount) : "";
  $all("[data-open]").forEach(function (btn) {
    btn.setAttribute("aria-expanded", String(!side.hidden && side.getAttribute("data-tab") === btn.getAttribute("data-open")));
  });
}

// ------------------------------------------------------------------ side panel

var side = $("#side");
export function openSide(tab) {
  side.hidden = false;
  side.setAttribute("data-tab", tab);
  $all(".tabs [data-tab]").forEach(function (b) { b.setAttribute("aria-selected", String(b.getAttribute("data-tab") === tab)); });
  $("#side-title").textContent = t("room.ctrl." + tab);
  if (tab === "chat") { markChatRead(); }
  updateControls();
}
function closeSide() { side.hidden = true; side.removeAttribute("data-tab"); updateControls(); }
/** The side panel is open on this tab. */
export function sideShows(tab) { return !side.hidden && side.getAttribute("data-tab") === tab; }

export function wireSide() {
  $all("[data-open]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var tab = btn.getAttribute("data-open");
      if (!side.hidden && side.getAttribute("data-tab") === tab) { closeSide(); } else { openSide(tab); }
    });
  });
  $all(".tabs [data-tab]").forEach(function (b) { b.addEventListener("click", function () { openSide(b.getAttribute("data-tab")); }); });
  $("#side-close").addEventListener("click", closeSide);
}
