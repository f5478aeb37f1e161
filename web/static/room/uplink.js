/* My own uplink: when it cannot carry video, stop sending it. Every 2 s the publish connection's
 * video outbound-rtp (the camera's and its small encoding's) is read: when the browser says the video is limited by
 * bandwidth (qualityLimitationReason "bandwidth") and what it sends stays below 60 kbit/s for
 * 10 s (not counting the first 15 s of a camera just started, while the browser's estimate
 * climbs), the camera comes off the sender (replaceTrack(null): nothing is sent, no renegotiation), the server is
 * told (media.mute {kind: "video", muted: true, reason: "bandwidth"}: the others see why), and
 * so am I. Before that, the camera's small encoding (peers.js) stops first: limited, below
 * twice that rate, the two encodings only share a link too narrow for one (each at the
 * browser's floor of ~30 kbit/s they never went below 60 together on a 50 kbit/s uplink);
 * without it the watch starts over on the camera's own stream. Turning the camera back on is
 * mine to do (devices.js puts the track back); the watch, and the small encoding, then start
 * over. R.uplink shows what it saw (tests read it). */
import { t } from "./dom.js";
import { R } from "./state.js";
import { toast, showError } from "./toasts.js";
import { media, setOn } from "./devices.js";
import { call, isJoined } from "./signal.js";

var EVERY_MS = 2000;
var LOW_KBPS = 60;
var LOW_FOR_MS = 10000;
// A camera that just started (joining, or turned back on) sends little while the browser's
// estimate of the link climbs: not counted for this long.
var GRACE_MS = 15000;

var last = null;         // {pc, at, bytes} of the previous reading
var lowSince = null;
var offForBandwidth = false;
var watched = null, graceUntil = 0;   // the track on the sender, and since when
var smallOff = null;     // the small encoding's sender while it is stopped for my uplink

/** "bandwidth" while my camera is off because my link could not carry it, else null. */
export function videoOffReason() { return offForBandwidth ? "bandwidth" : null; }

function videoSender(pc) {
  var found = null;
  pc.getTransceivers().forEach(function (tr) {
    if (found || !tr.sender || tr.currentDirection === "stopped") { return; }
    var kind = (tr.sender.track && tr.sender.track.kind) || (tr.receiver && tr.receiver.track && tr.receiver.track.kind);
    if (kind === "video") { found = tr.sender; }
  });
  return found;
}

async function read(pc) {
  var stats = await pc.getStats();
  var bytes = 0, limited = false, seen = false;
  stats.forEach(function (r) {
    if (r.type !== "outbound-rtp" || r.kind !== "video") { return; }
    seen = true;
    bytes += r.bytesSent || 0;
    // Simulcast: one report per layer; one limited by bandwidth is enough to say so.
    if (r.qualityLimitationReason === "bandwidth") { limited = true; }
  });
  return seen ? { bytes: bytes, limited: limited } : null;
}

async function tick() {
  var pc = R.pubPc;
  var sending = pc && pc.connectionState === "connected" && isJoined() && media.video && media.on.video;
  if (offForBandwidth && media.on.video) { offForBandwidth = false; }   // turned back on by me
  if (!sending) { last = null; lowSince = null; return; }
  var sender = videoSender(pc);
  if (!sender || !sender.track) { last = null; lowSince = null; watched = null; return; }
  var at = performance.now();
  if (sender.track !== watched) {
    watched = sender.track;
    graceUntil = at + GRACE_MS;
    if (smallOff) { await setActive(smallOff, true); smallOff = null; }
  }
  var r;
  try { r = await read(pc); } catch (e) { return; }
  if (!r || pc !== R.pubPc) { return; }
  at = performance.now();
  if (last && last.pc === pc && r.bytes >= last.bytes) {
    var kbps = (r.bytes - last.bytes) * 8 / (at - last.at);
    var low = r.limited && kbps < LOW_KBPS && at >= graceUntil;
    lowSince = low ? (lowSince === null ? last.at : lowSince) : null;
    R.uplink = { kbps: Math.round(kbps), limited: r.limited, low_for_ms: lowSince === null ? 0 : Math.round(at - lowSince),
      stopped: R.uplink ? R.uplink.stopped : 0 };
    var small = smallSender(pc, sender);
    if (small && !smallOff && r.limited && kbps < 2 * LOW_KBPS && at >= graceUntil) {
      smallOff = small;
      await setActive(small, false);
      R.uplink.small_stopped = true;
      last = null;
      lowSince = null;
      return;
    }
    R.uplink.small_stopped = !!smallOff;
    if (lowSince !== null && at - lowSince >= LOW_FOR_MS) {
      last = null;
      lowSince = null;
      await stopVideo(pc, sender);
      return;
    }
  }
  last = { pc: pc, at: at, bytes: r.bytes };
}

/** The sender of the camera's small encoding: the other one with the camera's track. */
function smallSender(pc, sender) {
  return pc.getSenders().filter(function (s) { return s !== sender && s.track && s.track === sender.track; })[0] || null;
}

async function setActive(sender, active) {
  try {
    var p = sender.getParameters();
    if (!p.encodings || !p.encodings.length) { return; }
    p.encodings[0].active = active;
    await sender.setParameters(p);
  } catch (e) { /* not supported, or the connection went away */ }
}

async function stopVideo(pc, sender) {
  offForBandwidth = true;
  watched = null;   // the same track comes back when I turn the camera on: the watch starts over then
  setOn("video", false, { local: true });
  // The camera's own sender and its small encoding's (peers.js): both stop.
  var senders = pc.getSenders().filter(function (s) { return s === sender || (s.track && s.track === sender.track); });
  for (var i = 0; i < senders.length; i++) {
    try { await senders[i].replaceTrack(null); } catch (e) { /* the connection went away meanwhile */ }
  }
  R.uplink = Object.assign({}, R.uplink, { stopped: ((R.uplink && R.uplink.stopped) || 0) + 1 });
  toast(t("room.uplink.stopped"), { kind: "warn", ms: 15000, key: "uplink" });
  if (pc !== R.pubPc || !isJoined()) { return; }
  var ack = await call("media.mute", { kind: "video", muted: true, reason: "bandwidth" });
  if (!ack.ok) { showError(ack.error); }
}

export function wireUplink() {
  setInterval(function () { tick().catch(function () { /* a closed connection */ }); }, EVERY_MS);
}
