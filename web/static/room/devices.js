/* My own camera and microphone: opening them (one may work without the other), switching
 * devices, the device lists, the level meter, the on/off toggles (told to the server as
 * media.mute), being muted by the mediator, and letting go of them at the end. */
import { canPublishRole } from "./config.js";
import { t, $, $all, h } from "./dom.js";
import { R } from "./state.js";
import { toast, showError } from "./toasts.js";
import { playQuietly } from "./screen.js";
import { call, isJoined } from "./signal.js";
import { publish } from "./peers.js";

var selfTile = $("#self-tile");
var selfVideo = $("#self-video");

export var media = {
  stream: new MediaStream(), audio: null, video: null,
  on: { audio: true, video: true }, deviceId: { audio: "", video: "" },
  ctx: null, analyser: null, source: null, meterRunning: false, error: null
};

function videoConstraints() {
  var c = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } };
  if (media.deviceId.video) { c.deviceId = { exact: media.deviceId.video }; } else { c.facingMode = "user"; }
  return c;
}
function audioConstraints() {
  var c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (media.deviceId.audio) { c.deviceId = { exact: media.deviceId.audio }; }
  return c;
}

function mediaErrorText(e) {
  var name = e && e.name;
  if (name === "NotAllowedError" || name === "SecurityError") { return t("room.media_error.denied"); }
  if (name === "NotFoundError" || name === "OverconstrainedError") { return t("room.media_error.notfound"); }
  if (name === "NotReadableError" || name === "AbortError") { return t("room.media_error.busy"); }
  return t("room.media_error.other");
}
function showMediaError(text) {
  var p = $("#media-error");
  if (text) { p.textContent = text; p.hidden = false; } else { p.hidden = true; }
}

export async function openDevices() {
  if (!canPublishRole) { showMediaError(t("room.observer_note")); updateToggles(); return; }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMediaError(t("room.media_error.insecure"));
    updateToggles();
    return;
  }
  var got = {}, firstError = null;
  try {
    var both = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints(), video: videoConstraints() });
    got.audio = both.getAudioTracks()[0] || null;
    got.video = both.getVideoTracks()[0] || null;
  } catch (e) {
    firstError = e;
    // One of the two may still work (no camera on a desktop, a camera in use by another app...).
    for (var kind of ["audio", "video"]) {
      try {
        var c = {};
        c[kind] = kind === "audio" ? audioConstraints() : videoConstraints();
        var s = await navigator.mediaDevices.getUserMedia(c);
        got[kind] = s.getTracks()[0] || null;
      } catch (e2) { if (!firstError) { firstError = e2; } }
    }
  }
  if (got.audio) { setLocalTrack("audio", got.audio); }
  if (got.video) { setLocalTrack("video", got.video); }
  if (!got.audio || !got.video) {
    var what = !got.audio && !got.video ? mediaErrorText(firstError)
      : (!got.video ? t("room.media_error.no_camera") : t("room.media_error.no_mic"));
    showMediaError(what);
  } else {
    showMediaError(null);
  }
  await fillDeviceLists();
  updateToggles();
}

function setLocalTrack(kind, track) {
  var old = media[kind];
  if (old && old !== track) { media.stream.removeTrack(old); old.stop(); }
  media[kind] = track;
  if (track) {
    media.stream.addTrack(track);
    track.enabled = media.on[kind];
    var settings = track.getSettings ? track.getSettings() : {};
    if (settings.deviceId) { media.deviceId[kind] = settings.deviceId; }
    if (kind === "video") { selfTile.classList.toggle("no-mirror", settings.facingMode === "environment"); }
    track.addEventListener("ended", function () {
      if (media[kind] === track) { toast(t(kind === "video" ? "room.media_error.camera_lost" : "room.media_error.mic_lost"), { kind: "warn" }); }
    });
  }
  selfVideo.srcObject = media.stream.getVideoTracks().length ? new MediaStream(media.stream.getVideoTracks()) : null;
  playQuietly(selfVideo);
  if (kind === "audio") { connectMeter(); }
  updateToggles();
  if (R.pubPc) { publish(); }
}

async function switchDevice(kind, deviceId) {
  if (!deviceId || deviceId === media.deviceId[kind]) { return; }
  media.deviceId[kind] = deviceId;
  // Phones cannot open two cameras at once: let go of the old one first.
  if (media[kind]) { media[kind].stop(); }
  try {
    var c = {};
    c[kind] = kind === "audio" ? audioConstraints() : videoConstraints();
    var s = await navigator.mediaDevices.getUserMedia(c);
    setLocalTrack(kind, s.getTracks()[0]);
    showMediaError(null);
  } catch (e) {
    showMediaError(mediaErrorText(e));
  }
}

async function fillDeviceLists() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) { return; }
  var list = [];
  try { list = await navigator.mediaDevices.enumerateDevices(); } catch (e) { return; }
  [["video", "videoinput", "#cam-select"], ["audio", "audioinput", "#mic-select"]].forEach(function (row) {
    var kind = row[0], select = $(row[2]);
    var devices = list.filter(function (d) { return d.kind === row[1] && d.deviceId !== "communications"; });
    select.textContent = "";
    if (!devices.length || !devices.some(function (d) { return d.deviceId; })) {
      select.appendChild(h("option", { value: "", text: t("room.device.none") }));
      select.disabled = true;
      return;
    }
    select.disabled = !canPublishRole;
    devices.forEach(function (d, i) {
      var label = d.label || t("room.device.unnamed", { n: i + 1 });
      select.appendChild(h("option", { value: d.deviceId, text: label, selected: d.deviceId === media.deviceId[kind] }));
    });
  });
}

// A simple level meter: RMS of the microphone signal.
function connectMeter() {
  var AC = window.AudioContext || window.webkitAudioContext;
  if (!AC || !media.audio) { return; }
  try {
    if (!media.ctx) { media.ctx = new AC(); media.analyser = media.ctx.createAnalyser(); media.analyser.fftSize = 512; }
    if (media.source) { media.source.disconnect(); }
    media.source = media.ctx.createMediaStreamSource(new MediaStream([media.audio]));
    media.source.connect(media.analyser);
    if (media.ctx.state === "suspended") { media.ctx.resume().catch(function () {}); }
  } catch (e) { return; }
  if (!media.meterRunning) { media.meterRunning = true; requestAnimationFrame(meterTick); }
}
var meterBar = $("#meter-bar"), meterBox = $(".meter"), meterData = null, meterShown = 0;
function meterTick() {
  if (!media.analyser) { media.meterRunning = false; return; }
  if (meterBox.offsetParent !== null) {
    if (!meterData) { meterData = new Float32Array(media.analyser.fftSize); }
    media.analyser.getFloatTimeDomainData(meterData);
    var sum = 0;
    for (var i = 0; i < meterData.length; i++) { sum += meterData[i] * meterData[i]; }
    var rms = Math.sqrt(sum / meterData.length);
    var level = media.on.audio && media.audio ? Math.min(1, rms * 6) : 0;
    meterShown = Math.max(level, meterShown * 0.85);
    meterBar.style.transform = "scaleX(" + meterShown.toFixed(3) + ")";
    meterBox.setAttribute("aria-valuenow", String(Math.round(meterShown * 100)));
  }
  requestAnimationFrame(meterTick);
}

export function updateToggles() {
  ["audio", "video"].forEach(function (kind) {
    var available = !!media[kind];
    var on = available && media.on[kind];
    $all("[data-toggle=" + kind + "]").forEach(function (btn) {
      btn.setAttribute("aria-pressed", on ? "true" : "false");
      btn.disabled = !available;
      var label = t("room." + (kind === "audio" ? "mic" : "cam") + (on ? "_on" : "_off"));
      btn.querySelector("span").textContent = label;
      btn.setAttribute("aria-label", t("room." + (kind === "audio" ? "mic" : "cam") + (on ? "_turn_off" : "_turn_on")));
    });
  });
  selfTile.classList.toggle("cam-off", !(media.video && media.on.video));
}

/** Turn my microphone or camera on or off (opts.local: do not tell the server, the caller does). */
export async function setOn(kind, on, opts) {
  opts = opts || {};
  media.on[kind] = on;
  if (media[kind]) { media[kind].enabled = on; }
  updateToggles();
  // The camera may have been taken off the sender (uplink.js, a link too poor for video): put it back.
  if (on && R.pubPc) { publish(); }
  if (R.me && !opts.local && isJoined()) {
    var ack = await call("media.mute", { kind: kind, muted: !on });
    if (!ack.ok && on && kind === "audio" && ack.error && ack.error.code === "forbidden") {
      // Held muted by the mediator (participant.mute_all with hold): the microphone stays off here too.
      media.on[kind] = false;
      if (media[kind]) { media[kind].enabled = false; }
      updateToggles();
      R.errors.push(ack.error);
      toast(t("room.floor.you_held"), { kind: "warn", ms: 7000 });
    } else if (!ack.ok) { showError(ack.error); }
  }
}

export function onMutedByMediator(data) {
  var kind = data && data.kind === "video" ? "video" : "audio";
  setOn(kind, false, { local: true });
  if (data && data.hold) { return; }   // held muted: floor.js says so
  toast(t(kind === "video" ? "room.muted_by.video" : "room.muted_by.audio"), { kind: "warn", ms: 7000 });
}

export function stopLocalMedia() {
  ["audio", "video"].forEach(function (kind) {
    if (media[kind]) { media.stream.removeTrack(media[kind]); media[kind].stop(); media[kind] = null; }
  });
  selfVideo.srcObject = null;
  updateToggles();
}

export function wireDevices() {
  // Browsers start an AudioContext only after a gesture: resume it on the first one.
  document.addEventListener("pointerdown", function () { if (media.ctx && media.ctx.state === "suspended") { media.ctx.resume().catch(function () {}); } }, true);

  $all("[data-toggle]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var kind = btn.getAttribute("data-toggle");
      setOn(kind, !media.on[kind]);
    });
  });
  $("#cam-select").addEventListener("change", function (e) { switchDevice("video", e.target.value); });
  $("#mic-select").addEventListener("change", function (e) { switchDevice("audio", e.target.value); });
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", function () { fillDeviceLists(); });
  }
}
