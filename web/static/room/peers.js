/* The two peer connections with the SFU: publish (my camera and microphone, sendonly; offered
 * by me, with VP8/Opus preferred and bitrate caps) and subscribe (everyone else, offered by the
 * server and answered here, one at a time). The server's track table maps each mid to a
 * participant: one MediaStream per remote participant, which the grid shows. */
import { VIDEO_MAX_BITRATE, AUDIO_MAX_BITRATE, SMALL_VIDEO_BITRATE, SCREEN_MAX_BITRATE, canPublishRole } from "./config.js";
import { R } from "./state.js";
import { showError } from "./toasts.js";
import { media } from "./devices.js";
import { call, isJoined, joined, hardRejoin, iceServers } from "./signal.js";
import { renderGrid, detachStreams } from "./grid.js";
import { renderShare, shareRefused } from "./share.js";

var pubTransceivers = {};      // audio / video / small / screen -> RTCRtpTransceiver on the publish connection
var pubChain = Promise.resolve();
var offerQueue = [];
var offerBusy = false;
export var remote = new Map(); // participant id -> {stream, audio, video}
export var shares = new Map(); // participant id -> the video track of their screen share
// My screen share's track (share.js), published on an m-line of its own named "screen".
var screenTrack = null;
export function setScreenTrack(track) { screenTrack = track || null; }
var trackTable = [];

function pcConfig() { return { iceServers: iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" }; }

function watchPc(pc, target) {
  pc.addEventListener("icecandidate", function (ev) {
    if (!ev.candidate || !ev.candidate.candidate) { return; }   // null / empty = end of candidates
    if ((target === "publish" ? R.pubPc : R.subPc) !== pc || !isJoined()) { return; }
    call("rtc.candidate", {
      candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex, target: target
    }).then(function (ack) { if (!ack.ok && ack.error && ack.error.code !== "offline") { R.errors.push(ack.error); } });
  });
  pc.addEventListener("connectionstatechange", function () {
    if (pc !== R.pubPc && pc !== R.subPc) { return; }
    if (pc.connectionState === "failed") { hardRejoin(target + " connection failed"); }
  });
}

export function setupPeers() {
  // join() tore the old ones down before asking; offers queued since then belong to these.
  [R.pubPc, R.subPc].forEach(function (pc) { if (pc) { try { pc.close(); } catch (e) { /* closed */ } } });
  pubTransceivers = {};
  R.subPc = new RTCPeerConnection(pcConfig());
  watchPc(R.subPc, "subscribe");
  var grants = (R.me && R.me.grants) || [];
  if (grants.indexOf("publish") >= 0 || (!R.me.grants && canPublishRole)) {
    R.pubPc = new RTCPeerConnection(pcConfig());
    watchPc(R.pubPc, "publish");
  }
}

export function teardownPeers() {
  [R.pubPc, R.subPc].forEach(function (pc) { if (pc) { try { pc.close(); } catch (e) { /* closed */ } } });
  R.pubPc = R.subPc = null;
  pubTransceivers = {};
  offerQueue = [];
  trackTable = [];
  remote.forEach(function (_v, pid) { remote.delete(pid); });
  shares.clear();
  detachStreams();
  renderShare();
}

/* Video goes out with three temporal layers (L1T3) where the browser can: the server then
 * forwards only the base layer (a quarter of the frames, about half the bits) to a viewer whose
 * link is narrow, and everything to the others (docs/protocol.md, "Link quality and adaptation"). */
function addSendTransceiver(pc, track, kind) {
  var base = { maxBitrate: kind === "video" ? VIDEO_MAX_BITRATE : AUDIO_MAX_BITRATE };
  var init = { direction: "sendonly", streams: [media.stream], sendEncodings: [base] };
  if (kind === "video") {
    try {
      return pc.addTransceiver(track, Object.assign({}, init, { sendEncodings: [Object.assign({ scalabilityMode: "L1T3" }, base)] }));
    } catch (e) { /* no temporal layers here: one layer, the server pauses instead of reducing */ }
  }
  return pc.addTransceiver(track, init);
}

/* The camera once more, as a small encoding of its own (the same track on a second m-line):
 * what a viewer whose link cannot carry the camera's stream gets instead of no video
 * (docs/protocol.md, "Link quality and adaptation"). null where the browser will not. */
function addSmallTransceiver(pc, track) {
  // No maxFramerate: the track's source takes the lowest frame rate any of its encoders asks
  // for, so 15 fps here held the camera's own stream at 15 fps too.
  try {
    return pc.addTransceiver(track, { direction: "sendonly", streams: [media.stream],
      sendEncodings: [{ maxBitrate: SMALL_VIDEO_BITRATE, scaleResolutionDownBy: 4 }] });
  } catch (e) { return null; }
}

function maxBitrateOf(key) {
  if (key === "screen") { return SCREEN_MAX_BITRATE; }
  return key === "small" ? SMALL_VIDEO_BITRATE : key === "video" ? VIDEO_MAX_BITRATE : AUDIO_MAX_BITRATE;
}

/* My screen share: its own m-line, added by a re-offer and named "screen" in `tracks`; stopping
 * turns the m-line inactive (the server closes the share), sharing again reuses it
 * (docs/protocol.md, "Screen sharing"). Returns whether the connection must be renegotiated. */
async function syncScreen(pc) {
  var tr = pubTransceivers.screen;
  if (screenTrack && !tr) {
    tr = pc.addTransceiver(screenTrack, { direction: "sendonly", sendEncodings: [{ maxBitrate: SCREEN_MAX_BITRATE }] });
    preferCodec(tr, "video");
    pubTransceivers.screen = tr;
    return true;
  }
  if (!tr) { return false; }
  if (screenTrack && (tr.direction !== "sendonly" || tr.sender.track !== screenTrack)) {
    await tr.sender.replaceTrack(screenTrack);
    if (tr.direction === "sendonly") { return false; }   // another window: no renegotiation
    tr.direction = "sendonly";
    return true;
  }
  if (!screenTrack && tr.direction !== "inactive") {
    await tr.sender.replaceTrack(null);
    tr.direction = "inactive";
    return true;
  }
  return false;
}

function preferCodec(transceiver, kind) {
  if (!transceiver.setCodecPreferences) { return; }
  var wanted = kind === "video" ? "video/vp8" : "audio/opus";
  var sources = [window.RTCRtpReceiver, window.RTCRtpSender];
  for (var i = 0; i < sources.length; i++) {
    var caps = sources[i] && sources[i].getCapabilities && sources[i].getCapabilities(kind);
    if (!caps || !caps.codecs) { continue; }
    var first = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() === wanted; });
    if (!first.length) { return; }
    var rest = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() !== wanted; });
    try { transceiver.setCodecPreferences(first.concat(rest)); return; } catch (e) { /* try the other list */ }
  }
}

async function capBitrate(sender, key) {
  if (!sender || !sender.getParameters) { return; }
  try {
    var p = sender.getParameters();
    if (!p.encodings || !p.encodings.length) { p.encodings = [{}]; }
    var max = maxBitrateOf(key);
    if (p.encodings[0].maxBitrate === max) { return; }
    p.encodings[0].maxBitrate = max;
    await sender.setParameters(p);
  } catch (e) { /* not supported here: the browser's own rate control remains */ }
}

export function publish() {
  pubChain = pubChain.then(doPublish).catch(function (e) {
    R.errors.push({ code: "publish", message: String(e && e.message || e) });
  });
  return pubChain;
}

async function doPublish() {
  var pc = R.pubPc;
  if (!pc || pc.signalingState === "closed" || !isJoined()) { return; }
  var added = false;
  for (var key of ["audio", "video", "small"]) {
    var kind = key === "audio" ? "audio" : "video";
    var track = media[kind];
    var tr = pubTransceivers[key];
    if (track && !tr) {
      tr = key === "small" ? addSmallTransceiver(pc, track) : addSendTransceiver(pc, track, kind);
      if (!tr) { continue; }
      preferCodec(tr, kind);
      pubTransceivers[key] = tr;
      added = true;
    } else if (tr && tr.sender.track !== track) {
      await tr.sender.replaceTrack(track || null);   // a device switch: no renegotiation
    }
  }
  var startingScreen = !!screenTrack && !(pubTransceivers.screen && pubTransceivers.screen.direction === "sendonly");
  if (await syncScreen(pc)) { added = true; } else { startingScreen = false; }
  if (!added) { return; }
  var offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  var msg = { sdp: pc.localDescription.sdp, type: "offer" };
  var small = pubTransceivers.small, screen = pubTransceivers.screen;
  if ((small && small.mid) || (screen && screen.mid && screen.direction === "sendonly")) { msg.tracks = {}; }
  if (small && small.mid) { msg.tracks[small.mid] = "small"; }
  if (screen && screen.mid && screen.direction === "sendonly") { msg.tracks[screen.mid] = "screen"; }
  var ack = await call("rtc.offer", msg, 15000);
  if (pc !== R.pubPc) { return; }
  if (!ack.ok) {
    showError(ack.error);
    if (startingScreen) {
      // Refused (someone else shares in my area): back to the last agreed description, no share.
      try { await pc.setLocalDescription({ type: "rollback" }); } catch (e) { /* nothing to roll back */ }
      screenTrack = null;
      if (screen) { try { await screen.sender.replaceTrack(null); screen.direction = "inactive"; } catch (e) { /* stopped */ } }
      shareRefused(ack.error);
      return;
    }
    if (ack.error && (ack.error.code === "timeout" || ack.error.code === "internal_error")) { hardRejoin("publish"); }
    return;
  }
  await pc.setRemoteDescription({ type: ack.type || "answer", sdp: ack.sdp });
  for (var k in pubTransceivers) { await capBitrate(pubTransceivers[k].sender, k); }
}

export function onServerOffer(msg) {
  if (!msg || typeof msg.sdp !== "string") { return; }
  offerQueue.push(msg);
  pumpOffers();
}

export async function pumpOffers() {
  if (offerBusy) { return; }
  offerBusy = true;
  try {
    while (offerQueue.length && R.subPc && joined) {
      var msg = offerQueue.shift();
      await answerOffer(R.subPc, msg);
    }
  } finally {
    offerBusy = false;
  }
}

async function answerOffer(pc, msg) {
  try {
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    var answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (pc !== R.subPc) { return; }
    trackTable = Array.isArray(msg.tracks) ? msg.tracks : [];
    R.trackTable = trackTable;  // mid -> publisher, for tests reading per-publisher statistics
    rebuildRemote(pc);
    var ack = await call("rtc.answer", { sdp: pc.localDescription.sdp, type: "answer" }, 15000);
    if (!ack.ok && pc === R.subPc) {
      R.errors.push(ack.error);
      if (ack.error && ack.error.code !== "offline") { hardRejoin("subscribe answer refused"); }
    }
  } catch (e) {
    if (pc === R.subPc) { R.errors.push({ code: "subscribe", message: String(e && e.message || e) }); hardRejoin("subscribe"); }
  }
}

/** One MediaStream per remote participant, from the active receivers of the track table. */
function rebuildRemote(pc) {
  var byMid = {};
  pc.getTransceivers().forEach(function (tr) { if (tr.mid !== null) { byMid[tr.mid] = tr; } });
  var want = new Map(), nowShared = new Map();
  trackTable.forEach(function (row) {
    if (!row || !row.active || !row.participant_id) { return; }
    var tr = byMid[row.mid];
    if (!tr || !tr.receiver || !tr.receiver.track) { return; }
    if (row.role === "screen") { nowShared.set(row.participant_id, tr.receiver.track); return; }   // shown large (share.js)
    var entry = want.get(row.participant_id) || { audio: null, video: null };
    entry[row.kind === "audio" ? "audio" : "video"] = tr.receiver.track;
    want.set(row.participant_id, entry);
  });
  remote.forEach(function (_v, pid) { if (!want.has(pid)) { remote.delete(pid); } });
  want.forEach(function (entry, pid) {
    var old = remote.get(pid);
    if (old && old.audio === entry.audio && old.video === entry.video) { return; }
    entry.stream = new MediaStream([entry.audio, entry.video].filter(Boolean));
    remote.set(pid, entry);
  });
  shares.clear();
  nowShared.forEach(function (track, pid) { shares.set(pid, track); });
  renderGrid();
  renderShare();
}
