/* The link check on the check-in screen, before entering: the round trip to this server (a few
 * small requests), then the throughput down and up (a download of 256 KB, uploads of 8 to
 * 128 KB), all within about 3 s (round trip at most 1.4 s, download 1 s, upload 1.2 s). The
 * figures go to the server, which answers the verdict (good / fair / poor; the rule is in
 * server/services/live.py) and writes it to the session's record. The page says it plainly
 * and, when video may not work, offers to enter with audio only (camera off, no video
 * received). API: docs/api.md (/link-check/*), authenticated by the join link's token. */
import { CFG } from "./config.js";
import { t, $, now } from "./dom.js";
import { R } from "./state.js";

var API = "/api/v1/link-check/";
var PINGS = 5;                 // the first one also opens the connection: not counted when others are
var PINGS_MS = 600;            // no new ping after this...
var PING_MS = 800;             // ...and none waited for longer than this
var DOWN_BYTES = 256 * 1024, DOWN_MS = 1000;
var UP_CHUNKS = [8192, 16384, 32768, 65536, 131072], UP_MS = 1200;
var MAX_KBPS = 10000000;       // the server's bound on a figure

var box = $("#link-check");
var running = null;

function headers(extra) {
  var hd = { "X-Join-Token": CFG.token };
  Object.keys(extra || {}).forEach(function (k) { hd[k] = extra[k]; });
  return hd;
}

function probeError(status, body) {
  var err = (body && body.error) || {};
  return { code: err.code || "http_" + status, message: err.message || "", status: status };
}

async function failIfBad(resp) {
  if (resp.ok) { return resp; }
  var body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  throw probeError(resp.status, body);
}

/** Median round trip of small requests, in ms. */
async function measureRtt(started) {
  var samples = [];
  for (var i = 0; i < PINGS && (i === 0 || now() - started < PINGS_MS); i++) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, PING_MS);
    var t0 = now();
    try {
      var resp = await failIfBad(await fetch(API + "ping?n=" + i + "&r=" + Math.random().toString(36).slice(2),
        { headers: headers(), cache: "no-store", signal: ctl.signal }));
      await resp.text();
      samples.push(now() - t0);
    } catch (e) {
      clearTimeout(timer);
      if (e && e.status) { throw e; }       // refused by the server: say so
      samples.push(now() - t0);             // no answer in time: at least this long
      break;
    }
    clearTimeout(timer);
  }
  if (samples.length > 1) { samples.shift(); }   // the first also opened the connection
  samples.sort(function (a, b) { return a - b; });
  return samples[Math.floor(samples.length / 2)];
}

/** Download: bytes that arrived until the end or the time bound, over the time they took. */
async function measureDown(rtt) {
  var ctl = new AbortController();
  var timer = setTimeout(function () { ctl.abort(); }, DOWN_MS);
  var t0 = now(), got = 0;
  try {
    var resp = await failIfBad(await fetch(API + "download?bytes=" + DOWN_BYTES + "&r=" + Math.random().toString(36).slice(2),
      { headers: headers(), cache: "no-store", signal: ctl.signal }));
    var reader = resp.body.getReader();
    for (;;) {
      var part = await reader.read();
      if (part.done) { break; }
      got += part.value.byteLength;
    }
  } catch (e) {
    if (e && e.status) { clearTimeout(timer); throw e; }
  }
  clearTimeout(timer);
  return kbps(got, now() - t0, rtt);
}

/** Upload: requests of growing size (8 to 128 KB) one after the other until the time bound;
 * only what the server said it received counts (a browser's progress events count what its
 * socket buffers took, which flatters a slow uplink). */
async function measureUp(rtt) {
  var payload = new Uint8Array(UP_CHUNKS[UP_CHUNKS.length - 1]);
  for (var i = 0; i < payload.length; i += 65536) { crypto.getRandomValues(payload.subarray(i, i + 65536)); }
  var started = now(), bytes = 0, busy = 0;
  for (var c = 0; c < UP_CHUNKS.length; c++) {
    var left = UP_MS - (now() - started);
    if (left <= 0) { break; }
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, left);
    var t0 = now();
    try {
      var resp = await failIfBad(await fetch(API + "upload", {
        method: "POST", headers: headers({ "Content-Type": "application/octet-stream" }), cache: "no-store",
        body: payload.subarray(0, UP_CHUNKS[c]), signal: ctl.signal }));
      var body = await resp.json();
      clearTimeout(timer);
      bytes += body.received || 0;
      var took = now() - t0;
      busy += Math.max(took - rtt, took / 2, 1);   // each request costs a round trip besides the transfer
    } catch (e) {
      clearTimeout(timer);
      if (e && e.status) { throw e; }
      // Not done in time: this one's time counts, its bytes do not (the server may have had some).
      busy += now() - t0;
      break;
    }
  }
  if (!bytes) { return 0; }
  return Math.min(MAX_KBPS, Math.round(bytes * 8 / busy));
}

function kbps(bytes, ms, rtt) {
  // One round trip of the time is the request itself, not the transfer.
  var transfer = Math.max(ms - rtt, ms / 2, 1);
  return Math.min(MAX_KBPS, Math.round(bytes * 8 / transfer));
}

export function rateText(k) {
  if (k === null || k === undefined || !isFinite(k)) { return t("room.unit.na"); }
  if (k >= 1000) { return t("room.unit.mbps", { n: (k / 1000).toFixed(k >= 10000 ? 0 : 1) }); }
  return t("room.unit.kbps", { n: Math.round(k) });
}

function show(state, verdict, figures) {
  box.setAttribute("data-state", state);
  if (verdict) { box.setAttribute("data-verdict", verdict); } else { box.removeAttribute("data-verdict"); }
  var text = state === "running" ? t("room.check.running")
    : state === "failed" ? t("room.check.failed")
    : verdict === "good" ? t("room.check.good") : verdict === "fair" ? t("room.check.fair") : t("room.check.poor");
  $("#link-verdict").textContent = text;
  $("#link-figures").textContent = figures ? t("room.check.figures", {
    rtt: Math.round(figures.rtt_ms), down: rateText(figures.down_kbps), up: rateText(figures.up_kbps) }) : "";
  $("#link-again").hidden = state === "running";
  // Video may not work: offer to go in with audio only.
  var offer = state === "done" && (verdict === "fair" || verdict === "poor");
  $("#enter-audio-btn").hidden = !offer;
  $("#link-hint").hidden = !offer;
  $("#screen-precheck .actions").classList.toggle("two", offer);
}

async function runCheck() {
  var started = now();
  R.linkCheck = { state: "running" };
  show("running");
  try {
    var rtt = await measureRtt(started);
    var down = await measureDown(rtt);
    var up = await measureUp(rtt);
    var figures = { rtt_ms: Math.round(rtt * 10) / 10, down_kbps: down, up_kbps: up };
    var resp = await fetch(API + "result", {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), cache: "no-store",
      body: JSON.stringify(figures)
    });
    var body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    if (!resp.ok || !body || !body.verdict) { throw probeError(resp.status, body); }
    R.linkCheck = { state: "done", verdict: body.verdict, figures: figures, ms: Math.round(now() - started) };
    show("done", body.verdict, figures);
  } catch (e) {
    R.linkCheck = { state: "failed", error: e && e.code ? e : { code: "network", message: String(e && e.message || e) },
      ms: Math.round(now() - started) };
    show("failed");
  }
}

/** Run the check (again); one at a time. */
export function checkLink() {
  if (!running) { running = runCheck().finally(function () { running = null; }); }
  return running;
}

export function wireLinkCheck(enterAudioOnly) {
  $("#link-again").addEventListener("click", function () { checkLink(); });
  $("#enter-audio-btn").addEventListener("click", function () { enterAudioOnly(); });
}
