/* The grid: one tile per person in my area who publishes (mediator first), with name, role,
 * muted icons, link quality bars (and, for the mediator, the link's figures) and their stream
 * from peers.js; what the server forwards of their video to me (room.state `video`: full,
 * reduced or small (their small encoding): a badge, paused: the placeholder with their name, a voice-level ring and why), their
 * camera off for bandwidth, my audio only; the first decoded frame (R.firstFrameAt); and the
 * "sound blocked" button when the browser refuses to play sound without a gesture. */
import { t, $, h, personLabel, now } from "./dom.js";
import { R, myWhere, grants } from "./state.js";
import { playQuietly } from "./screen.js";
import { remote } from "./peers.js";
import { media } from "./devices.js";
import { audioOnlyOn } from "./controls.js";
import { qualityOf, makeBars, setBars, linkParts } from "./quality.js";

var grid = $("#grid");
var tiles = new Map();   // participant id -> tile element
var soundBlocked = false;

function makeTile(p) {
  var video = h("video", { autoplay: true, playsinline: true });
  var tile = h("div", { className: "tile no-video", "data-pid": p.id, "data-testid": "tile" },
    video,
    h("div", { className: "tile-ph" },
      h("div", { className: "tile-ph-inner" },
        h("span", { className: "avatar", "aria-hidden": "true" }),
        h("span", { className: "tile-ph-name" }),
        h("span", { className: "tile-note", "data-testid": "tile-video-note", role: "status", hidden: true }))),
    h("div", { className: "tile-icons" }),
    h("div", { className: "tile-bottom" },
      h("div", { className: "tile-link", "data-testid": "tile-link", hidden: true }),
      h("div", { className: "tile-label" }, makeBars(), h("span", { className: "tile-name" }), h("span", { className: "chip tile-role" }),
        h("span", { className: "chip tile-reduced", "data-testid": "tile-reduced", hidden: true }, t("room.tile.video_reduced")))));
  tile._video = video;
  tile._stream = null;
  video.addEventListener("resize", function () { updateTileVideo(tile); });
  return tile;
}

// ------------------------------------------------------------------ voice level on a placeholder

var meterCtx = null;
var metered = new Set();     // tiles whose placeholder shows the voice ring
var meterRunning = false, meterBuf = null;

function audioContext() {
  if (media.ctx) { return media.ctx; }   // the check-in meter's, resumed on the first gesture
  var AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) { return null; }
  if (!meterCtx) { try { meterCtx = new AC(); } catch (e) { return null; } }
  if (meterCtx.state === "suspended") { meterCtx.resume().catch(function () {}); }
  return meterCtx;
}

function meterOn(tile) {
  var stream = tile._stream;
  var track = stream && stream.getAudioTracks()[0];
  if (!track) { meterOff(tile); return; }
  if (tile._meter && tile._meter.track === track) { return; }
  meterOff(tile);
  var ctx = audioContext();
  if (!ctx) { return; }
  try {
    var source = ctx.createMediaStreamSource(new MediaStream([track]));
    var analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    tile._meter = { track: track, source: source, analyser: analyser, shown: 0 };
  } catch (e) { return; }
  metered.add(tile);
  if (!meterRunning) { meterRunning = true; requestAnimationFrame(meterTick); }
}

function meterOff(tile) {
  if (tile._meter) { try { tile._meter.source.disconnect(); } catch (e) { /* gone */ } tile._meter = null; }
  metered.delete(tile);
  tile.style.removeProperty("--voice");
}

function meterTick() {
  if (!metered.size) { meterRunning = false; return; }
  metered.forEach(function (tile) {
    var m = tile._meter;
    if (!m) { return; }
    if (!meterBuf || meterBuf.length !== m.analyser.fftSize) { meterBuf = new Float32Array(m.analyser.fftSize); }
    m.analyser.getFloatTimeDomainData(meterBuf);
    var sum = 0;
    for (var i = 0; i < meterBuf.length; i++) { sum += meterBuf[i] * meterBuf[i]; }
    var level = Math.min(1, Math.sqrt(sum / meterBuf.length) * 6);
    m.shown = Math.max(level, m.shown * 0.85);
    tile.style.setProperty("--voice", m.shown.toFixed(3));
    tile._voice = m.shown;
  });
  requestAnimationFrame(meterTick);
}

function iconSvg(name) {
  var src = $(".controls [data-toggle=" + (name === "mic" ? "audio" : "video") + "] svg");
  return src ? src.cloneNode(true) : h("span");
}

function attachStream(tile, stream) {
  if (tile._stream === stream) { return; }
  tile._stream = stream;
  var video = tile._video;
  video.srcObject = stream;
  tile._hasFrame = false;
  updateTileVideo(tile);
  if (!stream) { return; }
  if (stream.getVideoTracks().length) { watchFirstFrame(tile); }
  var p = video.play();
  if (p && p.catch) {
    p.catch(function (e) {
      if (e && e.name === "NotAllowedError") {
        // No gesture yet (e.g. after a reload): play without sound and offer a button.
        video.muted = true;
        video.play().catch(function () {});
        soundBlocked = true;
        $("#sound-btn").hidden = false;
      }
    });
  }
}

/** The peer connections are gone: every tile shows its placeholder. */
export function detachStreams() {
  tiles.forEach(function (tile) { attachStream(tile, null); });
}

/** The end: no tiles left. */
export function clearTiles() {
  tiles.forEach(function (tile) { meterOff(tile); tile.remove(); });
  tiles.clear();
}

function watchFirstFrame(tile) {
  var video = tile._video, stream = tile._stream;
  var seen = function () {
    if (tile._stream !== stream) { return; }
    tile._hasFrame = true;
    if (!R.firstFrameAt) { R.firstFrameAt = now(); }
    updateTileVideo(tile);
  };
  if (video.requestVideoFrameCallback) { video.requestVideoFrameCallback(seen); }
  else { video.addEventListener("loadeddata", seen, { once: true }); }
}

export function wireGrid() {
  $("#sound-btn").addEventListener("click", function () {
    soundBlocked = false;
    $("#sound-btn").hidden = true;
    tiles.forEach(function (tile) { tile._video.muted = false; playQuietly(tile._video); });
  });
}

/** Why a tile shows no video although its person publishes one, or null. */
function videoNote(p) {
  if (!p) { return null; }
  if (p.video_off_reason === "bandwidth") { return "bandwidth"; }   // they turned their camera off for their link
  if (p.muted && p.muted.video) { return null; }
  if (audioOnlyOn()) { return "audio_only"; }
  var v = R.state && R.state.video && R.state.video[p.id];
  return v === "paused" ? "paused" : null;
}
var NOTE_TEXT = { bandwidth: "room.tile.peer_audio_only", audio_only: "room.tile.audio_only_self", paused: "room.tile.video_paused" };

function updateTileVideo(tile) {
  var p = tile._p, v = tile._video;
  // Phones fill the screen with an upright picture, but show a landscape one whole.
  tile.classList.toggle("portrait", v.videoHeight > v.videoWidth);
  var videoMuted = p && p.muted && p.muted.video;
  var note = videoNote(p);
  var hasVideo = tile._stream && tile._stream.getVideoTracks().length && tile._hasFrame && !videoMuted && !note;
  tile.classList.toggle("no-video", !hasVideo);
  var noteEl = tile.querySelector(".tile-note");
  if (note) {
    noteEl.textContent = t(NOTE_TEXT[note]);
    noteEl.setAttribute("data-reason", note);
    noteEl.hidden = false;
  } else if (!noteEl.hidden) {
    noteEl.hidden = true;
    noteEl.removeAttribute("data-reason");
  }
  // The placeholder's ring follows their voice while their video is not shown.
  if (!hasVideo && tile.isConnected) { meterOn(tile); } else { meterOff(tile); }
}

export function renderGrid() {
  var where = myWhere();
  var people = (R.state && R.me && where && where !== "lobby") ? R.state.participants.filter(function (p) {
    return p.id !== R.me.id && p.where === where && (p.grants || []).indexOf("publish") >= 0;
  }) : [];
  // Mediator, parties (each followed by whoever accompanies them), experts, observers.
  var order = { mediator: 0, party: 1, interpreter: 1, support: 1, expert: 2, observer: 3 };
  var key = function (p) { return p.accompanies ? (p.accompanies_name || "") + "\u0001" + p.name : p.name; };
  var rank = function (p) { return p.role in order ? order[p.role] : 4; };
  people.sort(function (a, b) { return (rank(a) - rank(b)) || key(a).localeCompare(key(b)); });
  var keep = new Set(people.map(function (p) { return p.id; }));
  tiles.forEach(function (tile, pid) { if (!keep.has(pid)) { attachStream(tile, null); meterOff(tile); tile.remove(); tiles.delete(pid); } });
  var showLinks = grants().indexOf("admit") >= 0;   // the mediator sees every link's figures
  people.forEach(function (p, i) {
    var tile = tiles.get(p.id);
    if (!tile) { tile = makeTile(p); tiles.set(p.id, tile); }
    if (grid.children[i] !== tile) { grid.insertBefore(tile, grid.children[i] || null); }
    tile._p = p;
    tile.querySelector(".tile-name").textContent = p.name;
    tile.querySelector(".tile-ph-name").textContent = p.name;
    var q = qualityOf(p);
    setBars(tile.querySelector("[data-testid=tile-quality]"), q);
    tile.setAttribute("data-quality", q);
    var linkEl = tile.querySelector(".tile-link");
    var parts = showLinks ? linkParts(p.link) : null;
    if (parts) {
      var text = parts.join(" · ");
      if (linkEl.textContent !== text) { linkEl.textContent = text; }
      linkEl.hidden = false;
    } else { linkEl.hidden = true; }
    var fwd = R.state && R.state.video && R.state.video[p.id];
    tile.setAttribute("data-video", audioOnlyOn() ? "audio_only" : (fwd || "full"));
    tile.querySelector(".tile-reduced").hidden = !((fwd === "reduced" || fwd === "small") && !audioOnlyOn());
    tile.querySelector(".tile-role").textContent = personLabel(p);
    tile.querySelector(".avatar").textContent = (p.name || "?").trim().charAt(0) || "?";
    tile.setAttribute("data-role", p.role);
    if (p.accompanies) { tile.setAttribute("data-accompanies", p.accompanies); } else { tile.removeAttribute("data-accompanies"); }
    var icons = tile.querySelector(".tile-icons");
    icons.textContent = "";
    var noAudio = p.muted && p.muted.audio;
    var noVideo = p.muted && p.muted.video;
    if (noAudio) { icons.appendChild(h("span", { title: t("room.tile.muted"), "data-testid": "tile-muted-audio" }, iconSvg("mic"))); }
    if (noVideo) { icons.appendChild(h("span", { title: t("room.tile.cam_off"), "data-testid": "tile-muted-video" }, iconSvg("cam"))); }
    // The server marks someone whose media went silent (link down, changing networks).
    var reconnecting = p.connection === "reconnecting";
    tile.setAttribute("data-connection", reconnecting ? "reconnecting" : "connected");
    var status = tile.querySelector(".tile-status");
    if (reconnecting && !status) {
      tile.appendChild(h("div", { className: "tile-status", "data-testid": "tile-reconnecting", role: "status" }, t("room.tile.reconnecting")));
    } else if (!reconnecting && status) { status.remove(); }
    tile.setAttribute("aria-label", p.name + " · " + personLabel(p) + (noAudio ? " · " + t("room.tile.muted") : "") +
      (reconnecting ? " · " + t("room.tile.reconnecting") : "") + " · " + tile.querySelector("[data-testid=tile-quality]").title);
    var entry = remote.get(p.id);
    attachStream(tile, entry ? entry.stream : null);
    if (soundBlocked) { tile._video.muted = true; }
    updateTileVideo(tile);
  });
  grid.setAttribute("data-count", String(people.length));
  $("#grid-empty").hidden = people.length > 0;
}
