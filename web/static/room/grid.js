/* The grid: one tile per person in my area who publishes (mediator first), with name, role,
 * muted icons and their stream from peers.js; the first decoded frame (R.firstFrameAt); and
 * the "sound blocked" button when the browser refuses to play sound without a gesture. */
import { t, $, h, roleLabel, now } from "./dom.js";
import { R, myWhere } from "./state.js";
import { playQuietly } from "./screen.js";
import { remote } from "./peers.js";

var grid = $("#grid");
var tiles = new Map();   // participant id -> tile element
var soundBlocked = false;

function makeTile(p) {
  var video = h("video", { autoplay: true, playsinline: true });
  var tile = h("div", { className: "tile no-video", "data-pid": p.id, "data-testid": "tile" },
    video,
    h("div", { className: "tile-ph" }, h("span", { className: "avatar", "aria-hidden": "true" })),
    h("div", { className: "tile-icons" }),
    h("div", { className: "tile-label" }, h("span", { className: "tile-name" }), h("span", { className: "chip tile-role" })));
  tile._video = video;
  tile._stream = null;
  video.addEventListener("resize", function () { updateTileVideo(tile); });
  return tile;
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
  tiles.forEach(function (tile) { tile.remove(); });
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

function updateTileVideo(tile) {
  var p = tile._p, v = tile._video;
  // Phones fill the screen with an upright picture, but show a landscape one whole.
  tile.classList.toggle("portrait", v.videoHeight > v.videoWidth);
  var videoMuted = p && p.muted && p.muted.video;
  var hasVideo = tile._stream && tile._stream.getVideoTracks().length && tile._hasFrame && !videoMuted;
  tile.classList.toggle("no-video", !hasVideo);
}

export function renderGrid() {
  var where = myWhere();
  var people = (R.state && R.me && where && where !== "lobby") ? R.state.participants.filter(function (p) {
    return p.id !== R.me.id && p.where === where && (p.grants || []).indexOf("publish") >= 0;
  }) : [];
  var order = { mediator: 0, party: 1, expert: 2, observer: 3 };
  people.sort(function (a, b) { return (order[a.role] - order[b.role]) || a.name.localeCompare(b.name); });
  var keep = new Set(people.map(function (p) { return p.id; }));
  tiles.forEach(function (tile, pid) { if (!keep.has(pid)) { attachStream(tile, null); tile.remove(); tiles.delete(pid); } });
  people.forEach(function (p, i) {
    var tile = tiles.get(p.id);
    if (!tile) { tile = makeTile(p); tiles.set(p.id, tile); }
    if (grid.children[i] !== tile) { grid.insertBefore(tile, grid.children[i] || null); }
    tile._p = p;
    tile.querySelector(".tile-name").textContent = p.name;
    tile.querySelector(".tile-role").textContent = roleLabel(p.role);
    tile.querySelector(".avatar").textContent = (p.name || "?").trim().charAt(0) || "?";
    tile.setAttribute("data-role", p.role);
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
    tile.setAttribute("aria-label", p.name + " · " + roleLabel(p.role) + (noAudio ? " · " + t("room.tile.muted") : "") +
      (reconnecting ? " · " + t("room.tile.reconnecting") : ""));
    var entry = remote.get(p.id);
    attachStream(tile, entry ? entry.stream : null);
    if (soundBlocked) { tile._video.muted = true; }
    updateTileVideo(tile);
  });
  grid.setAttribute("data-count", String(people.length));
  $("#grid-empty").hidden = people.length > 0;
}
