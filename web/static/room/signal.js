/* The socket.io connection and the join protocol (docs/protocol.md): every client event is
 * acknowledged {ok, ...} (call, with a timeout); join and its refusals (redirect to the node
 * hosting the room, capacity, steps still owed); reconnecting and rejoining on a fresh
 * connection; a room.state pushed before the join's ack. Every server event is routed here. */
/* global io */
import { CFG, ACK_MS, STORE_KEY, RESUME_KEY } from "./config.js";
import { t, $, errorText, now } from "./dom.js";
import { R } from "./state.js";
import { toast, showError, setBanner, setConn } from "./toasts.js";
import { setScreen } from "./screen.js";
import { media, onMutedByMediator } from "./devices.js";
import { setupPeers, teardownPeers, publish, onServerOffer, pumpOffers } from "./peers.js";
import { renderState } from "./render.js";
import { onChat } from "./chat.js";
import { onHelpRequested } from "./help.js";
import { onLobbyWaiting, afterJoin } from "./controls.js";
import { onRecordingAsk, onRecordingRefused } from "./recording.js";
import { showStep } from "./steps.js";
import { videoOffReason } from "./uplink.js";
import { finish, onRemoved, onEnded } from "./end.js";

export var socket = null;
export var wantJoined = false;     // the user is in (or trying to get back into) the room
export var joined = false;         // the current connection's join was acknowledged
var joinGen = 0;
export var iceServers = [];
// Modules with server events of their own (evidence.js) add a function here: called with the socket once it exists.
export var socketHooks = [];
// Several nodes: the room lives on one of them. A join may be redirected there; when that
// node goes away we come back through this page's own node or the others we were told of.
var entryUrl = location.origin;
var nodeUrls = [];
var nodeTry = 0;
var connectFailures = 0;
var stateAfterJoin = null;

function useNode(url) {
  if (!socket || !url) { return; }
  socket.io.uri = url.replace(/\/+$/, "");
  R.node = socket.io.uri;
}
function nextNode() {
  var all = [entryUrl].concat(nodeUrls.filter(function (u) { return u !== entryUrl; }));
  nodeTry = (nodeTry + 1) % all.length;
  return all[nodeTry];
}

export function isJoined() { return joined && socket && socket.connected; }

export async function call(event, data, ms) {
  if (!socket || !socket.connected) { return { ok: false, error: { code: "offline", message: "" } }; }
  try {
    var ack = await socket.timeout(ms || ACK_MS).emitWithAck(event, data || {});
    return ack && typeof ack === "object" ? ack : { ok: false, error: { code: "bad_response", message: "" } };
  } catch (e) {
    return { ok: false, error: { code: "timeout", message: "" } };
  }
}

function ensureSocket() {
  if (socket) { if (!socket.connected) { socket.connect(); } return; }
  socket = io({
    path: "/socket.io/", transports: ["websocket", "polling"], tryAllTransports: true,
    reconnection: true, reconnectionDelay: 500, reconnectionDelayMax: 4000, timeout: 10000
  });
  // The settlement agreement's live draft (web/static/agreement-panel.js).
  R.agreement = window.mediationAgreementPanel && window.mediationAgreementPanel.attach(
    socket, $("#panel-agreement"), { t: t, lang: document.documentElement.lang,
      notify: function (m) { toast(m); }, onError: showError });
  socket.on("connect", onConnect);
  socket.on("disconnect", onDisconnect);
  document.dispatchEvent(new CustomEvent("room:socket", { detail: socket }));   // the room tools' events
  socket.on("connect_error", function () {
    if (!wantJoined) { return; }
    setConn("offline");
    setBanner(t("room.reconnecting"));
    // The node we talked to does not answer: the next attempt goes to another one.
    connectFailures += 1;
    if (nodeUrls.length > 1 || socket.io.uri !== entryUrl) { useNode(nextNode()); }
  });
  socket.on("room.moved", function () {
    // The room moved to another node (this one is stopping): come back through the deployment.
    R.moves = (R.moves || 0) + 1;
    useNode(entryUrl);
    hardRejoin("room.moved");
  });
  socket.on("room.state", onState);
  socket.on("rtc.offer", onServerOffer);
  socket.on("chat.message", onChat);
  socket.on("lobby.waiting", onLobbyWaiting);
  socket.on("help.requested", onHelpRequested);
  socket.on("muted", onMutedByMediator);
  socket.on("removed", onRemoved);
  socket.on("session.ended", onEnded);
  socket.on("recording.consent_request", onRecordingAsk);
  socket.on("recording.refused", onRecordingRefused);
  socket.on("device.admitted", onDeviceAdmitted);
  socket.on("device.denied", onDeviceDenied);
  socketHooks.forEach(function (hook) { hook(socket); });
}

// ------------------------------------------------------------------ one device per link

function deviceSecret() {
  try { return localStorage.getItem(RESUME_KEY); } catch (e) { return null; }
}
function keepDeviceSecret(secret) {
  if (typeof secret !== "string" || !secret) { return; }
  R.deviceSecret = secret;
  try { localStorage.setItem(RESUME_KEY, secret); } catch (e) { /* private mode: kept for this page only */ }
}
/** The link is in use on another device: wait here until the mediator lets this one in. */
function waitAsSecondDevice() {
  R.secondDevice = (R.secondDevice || 0) + 1;
  setConn("online");
  setBanner(null);
  setScreen("device");
}
function onDeviceAdmitted(data) {
  if (!wantJoined || !data) { return; }
  keepDeviceSecret(data.resume);
  join();
}
function onDeviceDenied() {
  finish("denied", { title: t("room.device.denied.title"), text: t("room.device.denied.text"), rejoin: false });
}

function onConnect() {
  connectFailures = 0;
  setConn("online");
  if (wantJoined) { join(); }
}

function onDisconnect(reason) {
  joined = false;
  teardownPeers();
  if (!wantJoined) { setConn("idle"); return; }
  setConn("connecting");
  setBanner(t("room.reconnecting"));
  // socket.io reconnects by itself, except when the server or we closed the connection on purpose.
  if (reason === "io server disconnect") { setTimeout(function () { if (wantJoined && socket && !socket.connected) { socket.connect(); } }, 500); }
}

/** Start over on a fresh connection: the server releases everything of the old one. */
var rejoinTimer = null, rejoinDelay = 500;
export function hardRejoin(why) {
  if (!wantJoined || rejoinTimer) { return; }
  setBanner(t("room.reconnecting"));
  var gen = joinGen;
  rejoinTimer = setTimeout(function () {
    rejoinTimer = null;
    if (!wantJoined) { return; }
    if (joined && joinGen !== gen) { return; }   // socket.io reconnected and joined meanwhile
    if (socket.connected) { socket.disconnect(); }
    socket.connect();
  }, rejoinDelay);
  rejoinDelay = Math.min(rejoinDelay * 2, 8000);
  R.errors.push({ code: "rejoin", message: String(why || "") });
}

/** The end (left, removed, ended...): no more joining, no pending rejoin. */
export function stopJoining() {
  wantJoined = false;
  joined = false;
  joinGen++;
  if (rejoinTimer) { clearTimeout(rejoinTimer); rejoinTimer = null; }
}

export async function enter() {
  if (wantJoined) { return; }
  wantJoined = true;
  setScreen("connecting");
  setConn("connecting");
  $("#enter-btn").disabled = true;
  $("#enter-btn").textContent = t("room.entering");
  if (media.ctx && media.ctx.state === "suspended") { media.ctx.resume().catch(function () {}); }
  ensureSocket();
  if (socket.connected) { join(); }
}

export async function join() {
  var gen = ++joinGen;
  joined = false;
  teardownPeers();
  stateAfterJoin = null;
  R.joinSentAt = now();
  var req = { token: CFG.token };
  var secret = R.deviceSecret || deviceSecret();
  if (secret) { req.resume = secret; }
  var ack = await call("join", req, 15000);
  if (gen !== joinGen || !wantJoined) { return; }
  if (!ack.ok) { return joinRefused(ack.error || {}); }
  joined = true;
  rejoinDelay = 500;
  keepDeviceSecret(ack.resume);
  R.joins += 1;
  if (Array.isArray(ack.nodes)) { nodeUrls = ack.nodes.filter(function (u) { return typeof u === "string" && /^https?:\/\//.test(u); }); }
  R.nodeId = ack.node && ack.node.id;
  R.joinedAt = now();
  R.me = ack.participant;
  R.inLobby = !!ack.in_lobby;
  R.joinedInLobby = R.inLobby;
  iceServers = Array.isArray(ack.ice_servers) ? ack.ice_servers : [];
  try { sessionStorage.setItem(STORE_KEY, "1"); } catch (e) { /* private mode */ }
  setBanner(null);
  setConn("online");
  setupPeers();
  // A room.state pushed before the ack is newer than the ack's copy only if it came after our join.
  renderState(stateAfterJoin || ack.room);
  stateAfterJoin = null;
  // The server starts everyone unmuted: tell it what is off here.
  ["audio", "video"].forEach(function (kind) {
    if (media[kind] && !media.on[kind]) {
      var off = { kind: kind, muted: true };
      if (kind === "video" && videoOffReason()) { off.reason = videoOffReason(); }
      call("media.mute", off);
    }
  });
  afterJoin();   // audio only, when I asked for it (at check-in or before a reload)
  publish();
  pumpOffers();
}

function joinRefused(err) {
  var code = err.code;
  if (code === "already_joined") { hardRejoin("already_joined"); return; }
  if (code === "second_device") { waitAsSecondDevice(); return; }
  if (code === "redirect" && err.node && /^https?:\/\//.test(err.node.url || "")) {
    // The room lives on another node of this deployment: talk to that one.
    R.redirects = (R.redirects || 0) + 1;
    R.redirectedTo = err.node.url;
    useNode(err.node.url);
    if (socket.connected) { socket.disconnect(); }
    socket.connect();
    return;
  }
  if (code === "capacity" || code === "unavailable") { hardRejoin(code); return; }
  if (code === "timeout" || code === "offline" || code === "internal_error") {
    // The server did not answer (or failed): try again on a fresh connection.
    hardRejoin(code);
    return;
  }
  if (code === "consent_required" || code === "notice_required" || code === "identity_required") {
    showStep(code, err);
    return;
  }
  finish("error", { title: t("room.error.join_title"), text: errorText(err), code: code, rejoin: false });
}

function onState(state) {
  if (!state || !Array.isArray(state.participants) || !wantJoined) { return; }
  if (!joined) { stateAfterJoin = state; return; }
  renderState(state);
}
