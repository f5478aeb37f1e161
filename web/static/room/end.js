/* The end of being in the room, whatever the reason: left, removed, denied, replaced by the
 * same link elsewhere, declined a step, the session ended (by the mediator's button here or
 * elsewhere), a join error. finish() lets go of everything (connection, peers, tiles, camera)
 * and shows the message screen; from there "rejoin" goes back in. Also: leaving when the tab
 * closes, and R.dropConnection for diagnostics and tests. */
import { CFG, STORE_KEY, canPublishRole } from "./config.js";
import { t, $ } from "./dom.js";
import { R } from "./state.js";
import { clearToasts, showError, setBanner, setConn } from "./toasts.js";
import { setScreen } from "./screen.js";
import { media, openDevices, stopLocalMedia } from "./devices.js";
import { socket, wantJoined, isJoined, call, enter, stopJoining } from "./signal.js";
import { teardownPeers } from "./peers.js";
import { clearTiles } from "./grid.js";

export function finish(kind, opts) {
  stopJoining();
  teardownPeers();
  clearTiles();
  if (socket && socket.connected) { socket.disconnect(); }
  stopLocalMedia();   // the camera light goes off; entering again asks for the devices anew
  if (kind !== "replaced" && kind !== "left") { try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* ignore */ } }
  setBanner(null);
  setConn("idle");
  clearToasts();
  $("#rec-ask").hidden = true;
  $("#rec-badge").hidden = true;
  $("#msg-title").textContent = opts.title;
  $("#msg-text").textContent = opts.text || "";
  $("#rejoin-btn").parentNode.hidden = !opts.rejoin;
  $("#rejoin-btn").textContent = opts.rejoinLabel || t("room.rejoin");
  $("#screen-message").setAttribute("data-kind", kind);
  if (opts.code) { $("#screen-message").setAttribute("data-code", opts.code); }
  setScreen("message");
}

export function onRemoved(data) {
  var reason = (data && data.reason) || "removed";
  if (reason === "replaced") {
    finish("replaced", { title: t("room.end.replaced.title"), text: t("room.end.replaced.text"), rejoin: true, rejoinLabel: t("room.end.replaced.here") });
  } else if (reason === "revoked") {
    finish("revoked", { title: t("room.end.revoked.title"), text: t("room.end.revoked.text"), rejoin: false });
  } else if (reason === "denied") {
    var text = t("room.end.denied.text") + (data && data.message ? " " + t("room.end.denied.reason", { reason: data.message }) : "");
    finish("denied", { title: t("room.end.denied.title"), text: text, rejoin: false });
  } else {
    finish("removed", { title: t("room.end.removed.title"), text: t("room.end.removed.text"), rejoin: false });
  }
}

export function onEnded() {
  finish("ended", { title: t("room.end.ended.title"), text: t("room.end.ended.text"), rejoin: false });
}

async function leave() {
  if (!wantJoined) { return; }
  if (isJoined()) { await call("leave", {}, 3000); }
  try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* ignore */ }
  // An expert's link is single-use: after leaving on purpose it does not open the room again.
  var singleUse = CFG.role === "expert";
  finish("left", { title: t("room.end.left.title"), text: t(singleUse ? "room.end.left.expert_text" : "room.end.left.text"), rejoin: !singleUse });
}

function resetEnterButton() {
  var btn = $("#enter-btn");
  btn.disabled = false;
  btn.textContent = t("room.enter");
}

/** The mediator ends the session for everyone. */
export function wireEndSession() {
  $("#end-btn").addEventListener("click", async function () {
    if (!window.confirm(t("room.manage.end_confirm"))) { return; }
    var ack = await call("session.end", {});
    if (!ack.ok) { showError(ack.error); return; }
    onEnded({ reason: "session_ended" });
  });
}

export function wireLeave() {
  $("#leave-btn").addEventListener("click", function () {
    if (!window.confirm(t("room.leave_confirm"))) { return; }
    leave();
  });

  $("#rejoin-btn").addEventListener("click", async function () {
    $("#screen-message").removeAttribute("data-kind");
    setScreen("connecting");
    if (canPublishRole && !media.audio && !media.video) { await openDevices(); }
    resetEnterButton();
    enter();
  });

  // Closing the tab: tell the server right away (best effort); a reload comes straight back in.
  // Not for experts: their link is single-use, and only a dropped connection (not a `leave`) keeps
  // it usable for a moment, so that a reload still works. Their socket closing releases them anyway.
  window.addEventListener("pagehide", function () {
    if (wantJoined && socket && socket.connected && CFG.role !== "expert") { socket.emit("leave", {}); }
  });

  // Diagnostics and tests: drop the connection the way a network failure does; socket.io
  // reconnects by itself and the room rejoins.
  R.dropConnection = function () {
    if (socket && socket.io && socket.io.engine) { socket.io.engine.close(); }
  };
}
