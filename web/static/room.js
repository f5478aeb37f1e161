/* The live mediation room: device check, lobby, two peer connections (publish / subscribe),
 * the grid, chat, the mediator's controls, and reconnecting. Protocol: docs/protocol.md
 * (CONTRACT.md): socket.io on /socket.io/, every client event acknowledged {ok, ...}.
 * All text comes from the page's JSON blob (room.* translations). */
(function () {
  "use strict";

  var cfgEl = document.getElementById("room-config");
  if (!cfgEl) { return; }
  var CFG = JSON.parse(cfgEl.textContent);
  var S = CFG.strings || {};
  var VIDEO_MAX_BITRATE = 600000;   // REMB from viewers does not reach us through the SFU: cap it here
  var AUDIO_MAX_BITRATE = 48000;
  var ACK_MS = 10000;
  var STORE_KEY = "mediation-room-entered:" + CFG.token.slice(-24);

  // ------------------------------------------------------------------ small helpers

  function t(key, kw) {
    var s = Object.prototype.hasOwnProperty.call(S, key) ? S[key] : key;
    if (kw) { s = s.replace(/\{(\w+)\}/g, function (m, k) { return k in kw ? String(kw[k]) : m; }); }
    return s;
  }
  function has(key) { return Object.prototype.hasOwnProperty.call(S, key); }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) { return; }
        if (k === "text") { node.textContent = v; } else if (k === "className") { node.className = v; } else if (k === "onclick") { node.addEventListener("click", v); } else { node.setAttribute(k, v === true ? "" : v); }
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) { continue; }
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  function roleLabel(role) { return has("room.role." + role) ? t("room.role." + role) : role; }
  function errorText(err) {
    err = err || {};
    var code = err.code || "unknown";
    if (has("room.error." + code)) { return t("room.error." + code); }
    return t("room.error.generic", { message: err.message || code });
  }
  function now() { return performance.now(); }

  // What tests and the benchmark read.
  var R = window.mediationRoom = {
    state: null, me: null, pubPc: null, subPc: null, joinedAt: null, firstFrameAt: null,
    joinSentAt: null, admittedAt: null, inLobby: false, screen: "precheck", joins: 0, errors: []
  };

  var body = document.body;
  var selfTile = $("#self-tile");
  var selfVideo = $("#self-video");
  var devicesBox = $("#devices");

  function setScreen(name) {
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

  function playQuietly(video) {
    if (video && video.srcObject && video.paused) { var p = video.play(); if (p && p.catch) { p.catch(function () {}); } }
  }

  // ------------------------------------------------------------------ toasts and banner

  var toastBox = $("#toasts");
  var keyedToasts = new Map();   // e.g. "lobby:<pid>" -> toast, dropped when it no longer applies
  function toast(text, opts) {
    opts = opts || {};
    var node = h("div", { className: "toast " + (opts.kind || ""), role: opts.kind === "error" ? "alert" : "status" }, h("span", { text: text }));
    if (opts.action) {
      node.appendChild(h("button", { type: "button", className: "btn btn-secondary", text: opts.action.label, onclick: function () { opts.action.run(); node.remove(); } }));
    }
    if (opts.key) {
      dropToast(opts.key);
      keyedToasts.set(opts.key, node);
    }
    toastBox.appendChild(node);
    while (toastBox.children.length > 4) { toastBox.firstChild.remove(); }
    setTimeout(function () { node.remove(); if (opts.key && keyedToasts.get(opts.key) === node) { keyedToasts.delete(opts.key); } }, opts.ms || 5000);
    return node;
  }
  function dropToast(key) {
    var old = keyedToasts.get(key);
    if (old) { old.remove(); keyedToasts.delete(key); }
  }
  function showError(err) { R.errors.push(err); toast(errorText(err), { kind: "error", ms: 7000 }); }

  var banner = $("#banner");
  function setBanner(text) { if (text) { banner.textContent = text; banner.hidden = false; } else { banner.hidden = true; } }
  var conn = $("#conn");
  function setConn(state) {
    conn.setAttribute("data-state", state);
    conn.textContent = "";
    conn.appendChild(h("span", { className: "conn-text", text: t("room.conn." + state) }));
  }
  setConn("idle");

  // ------------------------------------------------------------------ local media

  var canPublishRole = CFG.role !== "observer";
  var media = {
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

  async function openDevices() {
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
  // Browsers start an AudioContext only after a gesture: resume it on the first one.
  document.addEventListener("pointerdown", function () { if (media.ctx && media.ctx.state === "suspended") { media.ctx.resume().catch(function () {}); } }, true);

  function updateToggles() {
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

  async function setOn(kind, on, opts) {
    opts = opts || {};
    media.on[kind] = on;
    if (media[kind]) { media[kind].enabled = on; }
    updateToggles();
    if (R.me && !opts.local && isJoined()) {
      var ack = await call("media.mute", { kind: kind, muted: !on });
      if (!ack.ok) { showError(ack.error); }
    }
  }

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

  function stopLocalMedia() {
    ["audio", "video"].forEach(function (kind) {
      if (media[kind]) { media.stream.removeTrack(media[kind]); media[kind].stop(); media[kind] = null; }
    });
    selfVideo.srcObject = null;
    updateToggles();
  }

  // ------------------------------------------------------------------ signaling

  var socket = null;
  var wantJoined = false;     // the user is in (or trying to get back into) the room
  var joined = false;         // the current connection's join was acknowledged
  var joinGen = 0;
  var iceServers = [];
  // Several nodes: the room lives on one of them. A join may be redirected there; when that
  // node goes away we come back through this page's own node or the others we were told of.
  var entryUrl = location.origin;
  var nodeUrls = [];
  var nodeTry = 0;
  var connectFailures = 0;

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

  function isJoined() { return joined && socket && socket.connected; }

  async function call(event, data, ms) {
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
    /* global io */
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
  function hardRejoin(why) {
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

  async function enter() {
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

  async function join() {
    var gen = ++joinGen;
    joined = false;
    teardownPeers();
    stateAfterJoin = null;
    R.joinSentAt = now();
    var ack = await call("join", { token: CFG.token }, 15000);
    if (gen !== joinGen || !wantJoined) { return; }
    if (!ack.ok) { return joinRefused(ack.error || {}); }
    joined = true;
    rejoinDelay = 500;
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
      if (media[kind] && !media.on[kind]) { call("media.mute", { kind: kind, muted: true }); }
    });
    publish();
    pumpOffers();
  }

  function joinRefused(err) {
    var code = err.code;
    if (code === "already_joined") { hardRejoin("already_joined"); return; }
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

  // ------------------------------------------------------------------ steps before joining

  var step = { code: null, err: null };
  function showStep(code, err) {
    step.code = code; step.err = err;
    setScreen("step");
    setConn("online");
    var bodyEl = $("#step-body"), form = $("#identity-form");
    bodyEl.textContent = "";
    $("#step-error").hidden = true;
    form.hidden = code !== "identity_required";
    $("#step-title").textContent = t("room.step." + code + ".title");
    bodyEl.appendChild(h("p", { text: t("room.step." + code + ".text") }));
    if (code === "notice_required") {
      var list = h("ul", { className: "notice-list" });
      (err.notices || []).forEach(function (n) {
        var text = typeof n === "string" ? n : (n.text || n.title || n.id || "");
        list.appendChild(h("li", { text: has("room.notice." + text) ? t("room.notice." + text) : text }));
      });
      bodyEl.appendChild(list);
    }
    $("#step-yes").textContent = t("room.step." + code + ".yes");
    $("#step-no").textContent = t("room.step.cancel");
  }
  $("#step-yes").addEventListener("click", async function () {
    var code = step.code, err = step.err || {}, ack;
    if (code === "consent_required") {
      ack = await call("consent.online", { agree: true });
    } else if (code === "notice_required") {
      ack = await call("notice.ack", { notices: (err.notices || []).map(function (n) { return typeof n === "string" ? n : n.id; }) });
    } else if (code === "identity_required") {
      var form = $("#identity-form");
      if (!form.reportValidity()) { return; }
      var data = {};
      new FormData(form).forEach(function (v, k) { data[k] = String(v).trim(); });
      ack = await call("identity.verify", data);
    } else { return; }
    if (!ack.ok) {
      $("#step-error").textContent = errorText(ack.error);
      $("#step-error").hidden = false;
      return;
    }
    setScreen("connecting");
    join();
  });
  $("#step-no").addEventListener("click", function () {
    if (step.code === "consent_required") { call("consent.online", { agree: false }); }
    finish("declined", { title: t("room.end.declined.title"), text: t("room.end.declined.text"), rejoin: true });
  });

  // ------------------------------------------------------------------ peer connections

  var pubTransceivers = {};      // kind -> RTCRtpTransceiver on the publish connection
  var pubChain = Promise.resolve();
  var offerQueue = [];
  var offerBusy = false;
  var remote = new Map();        // participant id -> {stream, audio, video}
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

  function setupPeers() {
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

  function teardownPeers() {
    [R.pubPc, R.subPc].forEach(function (pc) { if (pc) { try { pc.close(); } catch (e) { /* closed */ } } });
    R.pubPc = R.subPc = null;
    pubTransceivers = {};
    offerQueue = [];
    trackTable = [];
    remote.forEach(function (_v, pid) { remote.delete(pid); });
    tiles.forEach(function (tile) { attachStream(tile, null); });
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

  async function capBitrate(sender, kind) {
    if (!sender || !sender.getParameters) { return; }
    try {
      var p = sender.getParameters();
      if (!p.encodings || !p.encodings.length) { p.encodings = [{}]; }
      var max = kind === "video" ? VIDEO_MAX_BITRATE : AUDIO_MAX_BITRATE;
      if (p.encodings[0].maxBitrate === max) { return; }
      p.encodings[0].maxBitrate = max;
      await sender.setParameters(p);
    } catch (e) { /* not supported here: the browser's own rate control remains */ }
  }

  function publish() {
    pubChain = pubChain.then(doPublish).catch(function (e) {
      R.errors.push({ code: "publish", message: String(e && e.message || e) });
    });
    return pubChain;
  }

  async function doPublish() {
    var pc = R.pubPc;
    if (!pc || pc.signalingState === "closed" || !isJoined()) { return; }
    var added = false;
    for (var kind of ["audio", "video"]) {
      var track = media[kind];
      var tr = pubTransceivers[kind];
      if (track && !tr) {
        tr = pc.addTransceiver(track, {
          direction: "sendonly", streams: [media.stream],
          sendEncodings: [{ maxBitrate: kind === "video" ? VIDEO_MAX_BITRATE : AUDIO_MAX_BITRATE }]
        });
        preferCodec(tr, kind);
        pubTransceivers[kind] = tr;
        added = true;
      } else if (tr && tr.sender.track !== track) {
        await tr.sender.replaceTrack(track || null);   // a device switch: no renegotiation
      }
    }
    if (!added) { return; }
    var offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    var ack = await call("rtc.offer", { sdp: pc.localDescription.sdp, type: "offer" }, 15000);
    if (pc !== R.pubPc) { return; }
    if (!ack.ok) {
      showError(ack.error);
      if (ack.error && (ack.error.code === "timeout" || ack.error.code === "internal_error")) { hardRejoin("publish"); }
      return;
    }
    await pc.setRemoteDescription({ type: ack.type || "answer", sdp: ack.sdp });
    for (var k in pubTransceivers) { await capBitrate(pubTransceivers[k].sender, k); }
  }

  function onServerOffer(msg) {
    if (!msg || typeof msg.sdp !== "string") { return; }
    offerQueue.push(msg);
    pumpOffers();
  }

  async function pumpOffers() {
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
    var want = new Map();
    trackTable.forEach(function (row) {
      if (!row || !row.active || !row.participant_id) { return; }
      var tr = byMid[row.mid];
      if (!tr || !tr.receiver || !tr.receiver.track) { return; }
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
    renderGrid();
  }

  // ------------------------------------------------------------------ the grid

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

  $("#sound-btn").addEventListener("click", function () {
    soundBlocked = false;
    $("#sound-btn").hidden = true;
    tiles.forEach(function (tile) { tile._video.muted = false; playQuietly(tile._video); });
  });

  function updateTileVideo(tile) {
    var p = tile._p, v = tile._video;
    // Phones fill the screen with an upright picture, but show a landscape one whole.
    tile.classList.toggle("portrait", v.videoHeight > v.videoWidth);
    var videoMuted = p && p.muted && p.muted.video;
    var hasVideo = tile._stream && tile._stream.getVideoTracks().length && tile._hasFrame && !videoMuted;
    tile.classList.toggle("no-video", !hasVideo);
  }

  function myWhere() {
    if (!R.state || !R.me) { return null; }
    var me = R.state.participants.find(function (p) { return p.id === R.me.id; });
    return me ? me.where : null;
  }

  function renderGrid() {
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
      tile.setAttribute("aria-label", p.name + " · " + roleLabel(p.role) + (noAudio ? " · " + t("room.tile.muted") : ""));
      var entry = remote.get(p.id);
      attachStream(tile, entry ? entry.stream : null);
      if (soundBlocked) { tile._video.muted = true; }
      updateTileVideo(tile);
    });
    grid.setAttribute("data-count", String(people.length));
    $("#grid-empty").hidden = people.length > 0;
  }

  // ------------------------------------------------------------------ room state

  var stateAfterJoin = null;
  var manageOpened = false;

  function onState(state) {
    if (!state || !Array.isArray(state.participants) || !wantJoined) { return; }
    if (!joined) { stateAfterJoin = state; return; }
    renderState(state);
  }

  function renderState(state) {
    if (!state) { return; }
    R.state = state;
    var where = myWhere();
    if (where === null) { return; }
    if (where === "lobby") {
      R.inLobby = true;
      setScreen("lobby");
      var present = state.mediator_present;
      if (present === undefined) { present = state.participants.some(function (p) { return p.role === "mediator"; }); }
      $("#lobby-mediator").textContent = t(present ? "room.lobby.mediator_present" : "room.lobby.mediator_absent");
    } else {
      if (R.inLobby) {
        R.inLobby = false;
        R.admittedAt = now();
        toast(t("room.admitted"), { kind: "ok", ms: 3000 });
      }
      if (R.agreement && !R.agreementLoaded) { R.agreementLoaded = true; R.agreement.refresh(); }
      if (R.screen !== "room") {
        setScreen("room");
        // Wide screens: the mediator sees the controls at once; everybody else keeps the grid wide.
        if (canManage() && !manageOpened && window.matchMedia && window.matchMedia("(min-width: 1000px)").matches) {
          manageOpened = true;
          openSide("manage");
        }
      }
    }
    var banner = $("#area-banner");
    var caucus = (state.caucuses || []).find(function (c) { return c.id === where; });
    if (caucus) {
      banner.textContent = t("room.in_caucus", { name: caucus.name });
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    // "X is waiting" notices go away once X is let in, refused or gone.
    keyedToasts.forEach(function (_node, key) {
      if (key.indexOf("lobby:") === 0) {
        var p = person(key.slice(6));
        if (!p || p.where !== "lobby") { dropToast(key); }
      }
    });
    renderGrid();
    renderManage();
    renderRecording();
    updateControls();
  }

  function grants() { return (R.me && R.me.grants) || []; }
  function canManage() { var g = grants(); return g.indexOf("admit") >= 0 || g.indexOf("move") >= 0 || g.indexOf("end") >= 0; }

  function updateControls() {
    var manage = canManage();
    var help = R.me ? R.me.role === "party" : CFG.role === "party";
    $all("[data-needs=manage]").forEach(function (n) { n.hidden = !manage; });
    $all("[data-needs=help]").forEach(function (n) { n.hidden = !help; });
    $all("[data-needs=record]").forEach(function (n) { n.hidden = grants().indexOf("record") < 0; });
    var lobbyCount = lobbyPeople().length;
    var badge = $(".controls [data-open=manage] .badge");
    badge.textContent = String(lobbyCount + helpRequests.length);
    badge.hidden = !(lobbyCount + helpRequests.length);
    $("#lobby-count").textContent = lobbyCount ? String(lobbyCount) : "";
    $all("[data-open]").forEach(function (btn) {
      btn.setAttribute("aria-expanded", String(!side.hidden && side.getAttribute("data-tab") === btn.getAttribute("data-open")));
    });
  }

  // ------------------------------------------------------------------ side panel

  var side = $("#side");
  function openSide(tab) {
    side.hidden = false;
    side.setAttribute("data-tab", tab);
    $all(".tabs [data-tab]").forEach(function (b) { b.setAttribute("aria-selected", String(b.getAttribute("data-tab") === tab)); });
    $("#side-title").textContent = t("room.ctrl." + tab);
    if (tab === "chat") { unread = 0; updateUnread(); setTimeout(function () { scrollChat(); }, 0); }
    updateControls();
  }
  function closeSide() { side.hidden = true; side.removeAttribute("data-tab"); updateControls(); }
  $all("[data-open]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var tab = btn.getAttribute("data-open");
      if (!side.hidden && side.getAttribute("data-tab") === tab) { closeSide(); } else { openSide(tab); }
    });
  });
  $all(".tabs [data-tab]").forEach(function (b) { b.addEventListener("click", function () { openSide(b.getAttribute("data-tab")); }); });
  $("#side-close").addEventListener("click", closeSide);

  // ------------------------------------------------------------------ chat

  var chatList = $("#chat-list");
  var chatIds = new Set();
  var unread = 0;
  function updateUnread() {
    var badge = $(".controls [data-open=chat] .badge");
    badge.textContent = String(unread);
    badge.hidden = unread === 0;
  }
  function scrollChat() { chatList.scrollTop = chatList.scrollHeight; }
  function fmtTime(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) { d = new Date(); }
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }
  function areaName(area) {
    if (area === "main") { return t("room.where.main"); }
    if (area === "lobby") { return t("room.where.lobby"); }
    var c = R.state && (R.state.caucuses || []).find(function (x) { return x.id === area; });
    return c ? c.name : t("room.where.caucus");
  }
  function onChat(msg) {
    if (!msg || chatIds.has(msg.id)) { return; }
    chatIds.add(msg.id);
    var mine = R.me && msg.participant_id === R.me.id;
    var head = h("div", { className: "msg-head" },
      h("strong", { text: mine ? t("room.you") : msg.name }), h("span", { text: roleLabel(msg.role) }),
      msg.area && msg.area !== "main" ? h("span", { className: "chip chip-where", text: areaName(msg.area) }) : null,
      h("time", { text: fmtTime(msg.at) }));
    chatList.appendChild(h("li", { className: "msg" + (mine ? " mine" : ""), "data-testid": "chat-message" }, head, h("div", { className: "msg-text", text: msg.text })));
    $("#chat-empty").hidden = true;
    scrollChat();
    if (side.hidden || side.getAttribute("data-tab") !== "chat") {
      if (!mine) { unread += 1; updateUnread(); toast(t("room.chat.new", { name: msg.name, text: msg.text.slice(0, 60) })); }
    }
  }
  $("#chat-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var input = $("#chat-input");
    var text = input.value.trim();
    if (!text) { return; }
    var btn = $("#chat-form button");
    btn.disabled = true;
    var ack = await call("chat.send", { text: text });
    btn.disabled = false;
    if (!ack.ok) { showError(ack.error); return; }
    input.value = "";
    if (ack.message) { onChat(ack.message); }
    input.focus();
  });

  // ------------------------------------------------------------------ help, mute notices

  var helpSentAt = null;
  $("#help-btn").addEventListener("click", async function () {
    if (helpSentAt !== null && now() - helpSentAt < 10000) { toast(t("room.help.sent")); return; }
    var ack = await call("help.request", {});
    if (!ack.ok) { showError(ack.error); return; }
    helpSentAt = now();
    toast(t("room.help.sent"), { kind: "ok" });
  });

  var helpRequests = [];
  function onHelpRequested(data) {
    if (!data) { return; }
    helpRequests = helpRequests.filter(function (x) { return x.participant_id !== data.participant_id; });
    helpRequests.push(data);
    if (!manageVisible()) {
      toast(t("room.help.requested", { name: data.name }), { kind: "warn", ms: 10000,
        action: { label: t("room.help.show"), run: function () { openSide("manage"); } } });
    }
    renderHelp();
    updateControls();
  }
  function renderHelp() {
    var box = $("#help-list");
    box.textContent = "";
    helpRequests.forEach(function (r) {
      box.appendChild(h("div", { className: "notice notice-warn", "data-testid": "help-request" },
        h("span", { text: t("room.help.requested", { name: r.name }) + " · " + areaName(r.where) }),
        h("button", { type: "button", className: "btn btn-secondary btn-small", text: t("room.help.done"), onclick: function () {
          helpRequests = helpRequests.filter(function (x) { return x !== r; });
          renderHelp(); updateControls();
        } })));
    });
  }

  function manageVisible() { return !side.hidden && side.getAttribute("data-tab") === "manage"; }
  function onLobbyWaiting(data) {
    if (!data || manageVisible()) { return; }   // the open list shows it already
    toast(t("room.lobby.waiting_notice", { name: data.name, role: roleLabel(data.role) }), { kind: "warn", ms: 15000, key: "lobby:" + data.participant_id,
      action: { label: t("room.manage.admit"), run: function () { admit(data.participant_id); } } });
  }

  function onMutedByMediator(data) {
    var kind = data && data.kind === "video" ? "video" : "audio";
    setOn(kind, false, { local: true });
    toast(t(kind === "video" ? "room.muted_by.video" : "room.muted_by.audio"), { kind: "warn", ms: 7000 });
  }

  // ------------------------------------------------------------------ the mediator's controls

  function lobbyPeople() {
    return R.state && canManage() ? R.state.participants.filter(function (p) { return p.where === "lobby"; }) : [];
  }
  function person(pid) { return R.state && R.state.participants.find(function (p) { return p.id === pid; }); }

  async function act(event, data, okText) {
    var ack = await call(event, data);
    if (!ack.ok) { showError(ack.error); renderManage(true); return null; }
    if (okText) { toast(okText, { kind: "ok" }); }
    return ack;
  }
  function admit(pid) { return act("lobby.admit", { participant_id: pid }); }

  var manageSig = "";
  function renderManage(force) {
    if (!canManage() || !R.state) { return; }
    var sig = JSON.stringify([R.state.participants, R.state.caucuses, R.state.recording, R.me && R.me.id]);
    if (!force && sig === manageSig) { return; }
    manageSig = sig;
    var caucuses = R.state.caucuses || [];

    var lobbyList = $("#lobby-list");
    lobbyList.textContent = "";
    var waiting = lobbyPeople();
    waiting.forEach(function (p) {
      lobbyList.appendChild(h("li", { className: "prow lobby", "data-pid": p.id },
        h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: p.name }), h("span", { className: "chip", text: roleLabel(p.role) })),
        h("div", { className: "prow-actions" },
          h("button", { type: "button", className: "btn btn-primary btn-small", "data-testid": "admit", "data-pid": p.id, text: t("room.manage.admit"),
            onclick: function () { admit(p.id); } }),
          h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "deny", text: t("room.manage.deny"),
            onclick: function () {
              var reason = window.prompt(t("room.manage.deny_reason", { name: p.name }), "");
              if (reason === null) { return; }
              var data = { participant_id: p.id };
              if (reason.trim()) { data.reason = reason.trim().slice(0, 300); }
              act("lobby.deny", data);
            } }))));
    });
    $("#lobby-empty").hidden = waiting.length > 0;

    var peopleList = $("#people-list");
    peopleList.textContent = "";
    var inside = R.state.participants.filter(function (p) { return p.where !== "lobby"; });
    inside.forEach(function (p) {
      var isMe = R.me && p.id === R.me.id;
      var chips = [h("span", { className: "chip", text: roleLabel(p.role) }), h("span", { className: "chip chip-where", text: areaName(p.where) })];
      if (p.muted && p.muted.audio) { chips.push(h("span", { className: "chip chip-warn", text: t("room.tile.muted") })); }
      if (p.muted && p.muted.video) { chips.push(h("span", { className: "chip chip-warn", text: t("room.tile.cam_off") })); }
      var consent = recView().consent || {};
      if (consent[p.id]) { chips.push(h("span", { className: "chip chip-where", "data-testid": "consent", text: t("room.rec.consent." + consent[p.id]) })); }
      var actions = h("div", { className: "prow-actions" });
      if (!isMe) {
        actions.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "mute-audio", "data-pid": p.id,
          text: t("room.manage.mute_audio"), disabled: !!(p.muted && p.muted.audio),
          onclick: function () { act("participant.mute", { participant_id: p.id, kind: "audio" }); } }));
        actions.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "mute-video", "data-pid": p.id,
          text: t("room.manage.mute_video"), disabled: !!(p.muted && p.muted.video),
          onclick: function () { act("participant.mute", { participant_id: p.id, kind: "video" }); } }));
      }
      var sel = h("select", { "aria-label": t("room.manage.move_to", { name: p.name }), "data-testid": "move", "data-pid": p.id });
      sel.appendChild(h("option", { value: "main", text: t("room.where.main"), selected: p.where === "main" }));
      caucuses.forEach(function (c) { sel.appendChild(h("option", { value: c.id, text: c.name, selected: p.where === c.id })); });
      sel.addEventListener("change", function () {
        act("participant.move", { participant_id: p.id, to: sel.value }, t("room.manage.moved", { name: p.name, where: areaName(sel.value) }));
      });
      actions.appendChild(h("label", { className: "small muted" }, t("room.manage.move") + " "));
      actions.appendChild(sel);
      if (!isMe) {
        actions.appendChild(h("button", { type: "button", className: "btn btn-danger btn-small", "data-testid": "remove", "data-pid": p.id,
          text: t("room.manage.remove"),
          onclick: function () {
            if (!window.confirm(t("room.manage.remove_confirm", { name: p.name }))) { return; }
            act("participant.remove", { participant_id: p.id });
          } }));
      }
      peopleList.appendChild(h("li", { className: "prow", "data-pid": p.id },
        h.apply(null, ["div", { className: "prow-head" }, h("span", { className: "prow-name", text: isMe ? p.name + " (" + t("room.you") + ")" : p.name })].concat(chips)),
        actions));
    });

    var clist = $("#caucus-list");
    clist.textContent = "";
    caucuses.forEach(function (c) {
      var members = R.state.participants.filter(function (p) { return p.where === c.id; }).map(function (p) { return p.name; });
      var row = h("li", { className: "crow", "data-caucus": c.id },
        h("span", null, h("strong", { text: c.name }), " ", h("span", { className: "muted small", text: members.length ? members.join("、") : t("room.manage.caucus_empty") })));
      if (myWhere() !== c.id) {
        row.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", text: t("room.manage.go_there"),
          onclick: function () { act("participant.move", { participant_id: R.me.id, to: c.id }); } }));
      } else {
        row.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", text: t("room.manage.back_main"),
          onclick: function () { act("participant.move", { participant_id: R.me.id, to: "main" }); } }));
      }
      clist.appendChild(row);
    });
  }

  $("#caucus-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var input = $("#caucus-name");
    var n = ((R.state && R.state.caucuses) || []).length + 1;
    var name = input.value.trim() || t("room.manage.caucus_default", { n: n });
    var ack = await act("caucus.create", { name: name }, t("room.manage.caucus_created", { name: name }));
    if (ack) { input.value = ""; }
  });

  // Experts: the pool through `experts.list`, an invitation through `invite.expert`.
  function fillSpecialties() {
    $all("select[data-role=specialty-filter], select[data-role=specialty]").forEach(function (sel) {
      sel.textContent = "";
      sel.appendChild(h("option", { value: "", text: sel.getAttribute("data-role") === "specialty" ? t("room.manage.choose") : t("room.manage.expert_all") }));
      (CFG.specialties || []).forEach(function (code) { sel.appendChild(h("option", { value: code, text: t("category." + code) })); });
    });
  }
  fillSpecialties();
  function specialtyName(code) { return has("category." + code) ? t("category." + code) : code; }

  async function findExperts() {
    var list = $("#expert-list");
    list.textContent = "";
    list.appendChild(h("li", { className: "muted small", text: t("room.manage.loading") }));
    var specialty = $("#expert-specialty").value;
    var ack = await call("experts.list", specialty ? { specialty: specialty } : {});
    list.textContent = "";
    if (!ack.ok) { list.appendChild(h("li", { className: "notice notice-error", text: errorText(ack.error) })); return; }
    var experts = ack.experts || [];
    if (!experts.length) { list.appendChild(h("li", { className: "muted small", text: t("room.manage.expert_none") })); return; }
    experts.forEach(function (x) {
      list.appendChild(h("li", { className: "prow" },
        h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: x.name }),
          h("span", { className: "chip", text: specialtyName(x.specialty) }),
          x.level ? h("span", { className: "chip chip-where", text: has("level." + x.level) ? t("level." + x.level) : x.level }) : null),
        x.organisation ? h("div", { className: "small muted", text: x.organisation }) : null,
        h("div", { className: "prow-actions" }, h("button", { type: "button", className: "btn btn-primary btn-small", text: t("room.manage.expert_invite"),
          onclick: function () { inviteExpert({ expert_id: x.id }, x.name); } }))));
    });
  }
  $("#expert-find").addEventListener("submit", function (ev) { ev.preventDefault(); findExperts(); });
  var expertsLoaded = false;
  $("#expert-box").addEventListener("toggle", function () { if ($("#expert-box").open && !expertsLoaded) { expertsLoaded = true; findExperts(); } });
  $("#expert-manual").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    var data = { name: f.name.value.trim(), specialty: f.specialty.value };
    if (f.organisation.value.trim()) { data.organisation = f.organisation.value.trim(); }
    if (!data.name || !data.specialty) { f.reportValidity(); return; }
    inviteExpert(data, data.name);
  });
  var lastInviteId = null;
  async function inviteExpert(data, name) {
    if ($("#expert-direct").checked) { data.direct = true; }
    var ack = await act("invite.expert", data);
    if (!ack) { return; }
    lastInviteId = ack.invite_id || null;
    $("#expert-revoke").hidden = !lastInviteId;
    var when = ack.expires_at ? new Date(ack.expires_at) : null;
    var until = when && !isNaN(when.getTime()) ? when.toLocaleString(CFG.lang) : "";
    $("#expert-link-text").textContent = t("room.manage.expert_link", { name: name, time: until });
    $("#expert-url").value = ack.url || "";
    var qr = $("#expert-qr");
    if (ack.qr) { qr.src = ack.qr; qr.hidden = false; } else { qr.hidden = true; }
    $("#expert-link").hidden = false;
  }
  $("#expert-copy").addEventListener("click", function () {
    var input = $("#expert-url"), btn = $("#expert-copy");
    var done = function () { btn.textContent = t("room.copied"); setTimeout(function () { btn.textContent = t("room.copy"); }, 1500); };
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
    } else { document.execCommand("copy"); done(); }
  });

  $("#expert-revoke").addEventListener("click", async function () {
    if (!lastInviteId || !window.confirm(t("room.manage.expert_revoke_confirm"))) { return; }
    var ack = await act("invite.revoke", { invite_id: lastInviteId }, t("room.manage.expert_revoked"));
    if (ack) { lastInviteId = null; $("#expert-link").hidden = true; }
  });

  $("#end-btn").addEventListener("click", async function () {
    if (!window.confirm(t("room.manage.end_confirm"))) { return; }
    var ack = await call("session.end", {});
    if (!ack.ok) { showError(ack.error); return; }
    onEnded({ reason: "session_ended" });
  });

  // ------------------------------------------------------------------ recording (with everyone's consent)

  function recView() {
    var r = R.state && R.state.recording;
    if (r === true) { return { active: true }; }
    return r && typeof r === "object" ? r : { active: false };
  }
  function renderRecording() {
    var rv = recView();
    var badge = $("#rec-badge");
    badge.hidden = !(rv.active || rv.pending);
    badge.classList.toggle("pending", !rv.active && !!rv.pending);
    badge.textContent = t(rv.active ? "room.rec.on" : "room.rec.pending");
    $("#rec-status").textContent = t(rv.active ? "room.rec.status_on" : (rv.pending ? "room.rec.status_pending" : "room.rec.status_off"));
    $("#rec-toggle").textContent = t(rv.active ? "room.rec.stop" : (rv.pending ? "room.rec.cancel" : "room.rec.start"));
  }
  $("#rec-toggle").addEventListener("click", async function () {
    var rv = recView();
    if (rv.active || rv.pending) {
      if (!window.confirm(t("room.rec.stop_confirm"))) { return; }
      await act("recording.stop", {});
    } else {
      await act("recording.start", {}, t("room.rec.asked"));
    }
  });
  function onRecordingAsk() { $("#rec-ask").hidden = false; $("#rec-yes").focus(); }
  async function answerRecording(agree) {
    $("#rec-ask").hidden = true;
    var ack = await call("recording.consent", { agree: agree });
    if (!ack.ok) { showError(ack.error); }
  }
  $("#rec-yes").addEventListener("click", function () { answerRecording(true); });
  $("#rec-no").addEventListener("click", function () { answerRecording(false); });
  function onRecordingRefused(data) {
    toast(t("room.rec.refused", { name: (data && data.name) || "" }), { kind: "warn", ms: 8000 });
  }

  // ------------------------------------------------------------------ the end: left, removed, ended

  function finish(kind, opts) {
    wantJoined = false;
    joined = false;
    joinGen++;
    if (rejoinTimer) { clearTimeout(rejoinTimer); rejoinTimer = null; }
    teardownPeers();
    tiles.forEach(function (tile) { tile.remove(); });
    tiles.clear();
    if (socket && socket.connected) { socket.disconnect(); }
    stopLocalMedia();   // the camera light goes off; entering again asks for the devices anew
    if (kind !== "replaced" && kind !== "left") { try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* ignore */ } }
    setBanner(null);
    setConn("idle");
    toastBox.textContent = "";
    keyedToasts.clear();
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

  function onRemoved(data) {
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

  function onEnded() {
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

  function resetEnterButton() {
    var btn = $("#enter-btn");
    btn.disabled = false;
    btn.textContent = t("room.enter");
  }

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

  // ------------------------------------------------------------------ start

  $("#enter-btn").addEventListener("click", function () { enter(); });
  updateToggles();
  setScreen("precheck");
  var autoEnter = false;
  try { autoEnter = sessionStorage.getItem(STORE_KEY) === "1"; } catch (e) { /* ignore */ }
  openDevices().then(function () {
    // Back after a reload or a crash of the tab: straight in, no second check-in.
    if (autoEnter && !wantJoined) { enter(); }
  });
})();
