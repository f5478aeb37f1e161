/* Screen sharing (docs/protocol.md, "Screen sharing"); screen.js is about which page screen
 * shows, this is about sharing one's own screen. The toolbar's "share screen" toggle (hidden
 * where the browser cannot capture a screen: phones), my share published as an extra m-line of
 * the publish connection (peers.js), the browser's own "stop sharing" (the track ends), the
 * server stopping it (screen.stopped); and the share of someone in my area shown large above
 * the tiles, with their name, a full-screen button (phones), and the mediator's "stop share". */
import { t, $ } from "./dom.js";
import { R, canManage, myWhere, person } from "./state.js";
import { toast, showError } from "./toasts.js";
import { call, socketHooks } from "./signal.js";
import { publish, setScreenTrack, shares } from "./peers.js";
import { playQuietly } from "./screen.js";

var view = $("#share-view");
var video = $("#share-video");
var btn = $("#share-btn");
var mine = null;        // my capture's track while I share
var busy = false;
// What tests read: whose share is shown, and whether I share.
export var SH = { shown: null, sharing: false };

export function canShare() {
  return !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia) &&
    !!R.me && (R.me.grants || []).indexOf("publish") >= 0;
}

/** Who shares in my area (from room.state), or null. */
function sharerHere() {
  var where = myWhere();
  if (!R.state || !where || where === "lobby") { return null; }
  return R.state.participants.find(function (p) {
    return p.where === where && (p.producers || []).some(function (x) { return x.role === "screen"; });
  }) || null;
}

async function start() {
  var other = sharerHere();
  if (other && (!R.me || other.id !== R.me.id)) {
    toast(t("room.share.busy", { name: other.name }), { kind: "warn", key: "share" });
    return;
  }
  var stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (e) {
    if (e && e.name !== "NotAllowedError" && e.name !== "AbortError") { toast(t("room.share.failed"), { kind: "error", key: "share" }); }
    return;
  }
  var track = stream.getVideoTracks()[0];
  if (!track) { return; }
  try { track.contentHint = "detail"; } catch (e) { /* older browser: its default */ }
  // The browser's own "stop sharing" bar, or the shared window closing.
  track.addEventListener("ended", function () { if (mine === track) { stop(); } });
  mine = track;
  SH.sharing = true;
  setScreenTrack(track);
  render();
  await publish();
}

/** Stop my capture and turn its m-line inactive (the server closes the share). */
export async function stop() {
  var track = mine;
  mine = null;
  SH.sharing = false;
  setScreenTrack(null);
  if (track) { track.stop(); }
  render();
  await publish();
}

/** The server refused my share (peers.js rolled the offer back). */
export function shareRefused() {
  var track = mine;
  mine = null;
  SH.sharing = false;
  if (track) { track.stop(); }
  render();
}

function onStopped(data) {
  if (!mine) { return; }
  var by = data && data.by && data.by.name;
  toast(data && data.reason === "moved" ? t("room.share.ended_moved") : t("room.share.stopped_by", { name: by || "" }),
    { kind: "warn", ms: 6000, key: "share" });
  stop();
}

function render() {
  if (btn) {
    btn.hidden = !canShare();
    btn.setAttribute("aria-pressed", mine ? "true" : "false");
    btn.querySelector("span").textContent = t(mine ? "room.share.stop" : "room.share.start");
  }
  renderShare();
}

/** The share in my area, large above the tiles (the subscribe track table marks it). */
export function renderShare() {
  var sharer = sharerHere();
  var track = sharer ? shares.get(sharer.id) : null;
  var me = R.me && sharer && sharer.id === R.me.id;
  var show = !!sharer && (me || !!track);
  SH.shown = show ? sharer.id : null;
  view.hidden = !show;
  document.body.classList.toggle("share-on", show && !me);
  if (!show) {
    if (video.srcObject) { video.srcObject = null; }
    return;
  }
  view.classList.toggle("share-mine", !!me);
  $("#share-by").textContent = me ? t("room.share.you") : t("room.share.by", { name: sharer.name });
  // The mediator stops anyone's share; I stop my own with the toolbar's toggle or here.
  $("#share-stop").hidden = !(canManage() || me);
  $("#share-stop").setAttribute("data-pid", sharer.id);
  $("#share-full").hidden = !!me;
  video.hidden = !!me;   // my own screen inside my screen would only mirror itself
  if (!me && (!video.srcObject || video.srcObject.getVideoTracks()[0] !== track)) {
    video.srcObject = new MediaStream([track]);
    playQuietly(video);
  }
}

async function stopShare() {
  var pid = $("#share-stop").getAttribute("data-pid");
  if (busy || !pid) { return; }
  if (R.me && pid === R.me.id) { stop(); return; }
  busy = true;
  try {
    var ack = await call("screen.stop", { participant_id: pid });
    if (!ack.ok) { showError(ack.error); return; }
    var p = person(pid);
    toast(t("room.share.stopped_other", { name: p ? p.name : "" }), { kind: "ok", key: "share" });
  } finally { busy = false; }
}

function fullScreen() {
  if (video.requestFullscreen) { video.requestFullscreen().catch(function () {}); }
  else if (video.webkitEnterFullscreen) { video.webkitEnterFullscreen(); }   // iPhone Safari
}

export function wireShare() {
  R.share = SH;
  if (btn) {
    btn.addEventListener("click", function () {
      if (busy) { return; }
      busy = true;
      (mine ? stop() : start()).finally(function () { busy = false; });
    });
  }
  $("#share-stop").addEventListener("click", stopShare);
  $("#share-full").addEventListener("click", fullScreen);
  video.addEventListener("dblclick", fullScreen);
  socketHooks.push(function (socket) {
    socket.on("screen.stopped", onStopped);
    socket.on("room.state", function () { setTimeout(render, 0); });
  });
  render();
}

