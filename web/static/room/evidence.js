/* Evidence on screen (docs/protocol.md, "Evidence"): the evidence tab (the case's files, present,
 * accept / reject the files added in the session, who may present, add a photo or a file from
 * the phone), and the presented page above the tiles: the page image of my own watermarked copy
 * (evidence.shown carries my URL), the presenter's pointer, and for the presenter the page,
 * zoom and stop buttons. Uploads go over HTTP with the join token (POST /api/v1/room/evidence). */
import { CFG } from "./config.js";
import { t, $, h, errorText } from "./dom.js";
import { R, canManage } from "./state.js";
import { toast, showError } from "./toasts.js";
import { sideShows } from "./screen.js";
import { call, socketHooks } from "./signal.js";

var view = $("#evidence-view");
var img = $("#evidence-img");
var dot = $("#evidence-pointer");
var sheet = $("#evidence-sheet");
var list = $("#evidence-list");
var allowList = $("#evidence-allow");
var status = $("#evidence-upload-status");
var POINTER_MS = 60;
var ZOOM_STEPS = [1, 1.5, 2, 3, 4];

// What tests read: the shown item, whether its image loaded, the last pointer.
var E = { showing: null, loaded: 0, pointer: null, items: [], mayPresent: false, uploads: [] };

function presenting() { return !!(E.showing && R.me && E.showing.presenter.id === R.me.id); }
function steering() { return presenting() || (E.showing && canManage()); }

// ------------------------------------------------------------------ the presented page

function onShown(s) {
  if (!s || typeof s.url !== "string") { return; }
  var same = E.showing && E.showing.evidence_id === s.evidence_id && E.showing.page === s.page;
  E.showing = s;
  view.hidden = false;
  document.body.classList.add("ev-on");
  $("#evidence-name").textContent = s.name;
  $("#evidence-page").textContent = t("room.evidence.page", { page: s.page, pages: s.pages });
  $("#evidence-by").textContent = t("room.evidence.by", { name: s.presenter.name });
  fit();
  if (!same) {
    E.loaded = 0;
    dot.hidden = true;
    img.src = s.url;
  }
  $all_("[data-ev-steer]").forEach(function (b) { b.hidden = !steering(); b.disabled = false; });
  $("#evidence-prev").disabled = s.page <= 1;
  $("#evidence-next").disabled = s.page >= s.pages;
  $("#evidence-zoom-out").disabled = s.zoom <= ZOOM_STEPS[0];
  $("#evidence-zoom-in").disabled = s.zoom >= ZOOM_STEPS[ZOOM_STEPS.length - 1];
}
/** Zoom 1 shows the whole page in the box (a phone screen included); more zoom scrolls within it. */
function fit() {
  if (!E.showing) { return; }
  var box = $(".ev-scroll", view);
  var maxH = parseFloat(getComputedStyle(box).maxHeight) || box.clientHeight;
  var w = box.clientWidth;
  if (img.naturalWidth && img.naturalHeight && maxH) { w = Math.min(w, maxH * img.naturalWidth / img.naturalHeight); }
  sheet.style.width = Math.floor(w * E.showing.zoom) + "px";
}
function $all_(sel) { return Array.prototype.slice.call(view.querySelectorAll(sel)); }

function onStopped() {
  E.showing = null;
  E.loaded = 0;
  E.pointer = null;
  view.hidden = true;
  document.body.classList.remove("ev-on");
  img.removeAttribute("src");
}

function onPointer(p) {
  if (!p || !E.showing || p.evidence_id !== E.showing.evidence_id) { return; }
  E.pointer = { x: p.x, y: p.y };
  dot.style.left = (p.x * 100) + "%";
  dot.style.top = (p.y * 100) + "%";
  dot.hidden = false;
}

async function steer(event, data) {
  // One step at a time: the next one starts from the page and zoom this one leads to.
  $all_("[data-ev-steer]").forEach(function (b) { b.disabled = true; });
  var ack = await call(event, data);
  if (!ack.ok) { showError(ack.error); }
  if (ack.ok && ack.showing) { onShown(ack.showing); } else if (E.showing) { onShown(E.showing); }
}

function zoomBy(dir) {
  var i = ZOOM_STEPS.indexOf(E.showing.zoom);
  if (i < 0) { i = 0; }
  var next = ZOOM_STEPS[Math.max(0, Math.min(ZOOM_STEPS.length - 1, i + dir))];
  steer("evidence.page", { page: E.showing.page, zoom: next });
}

var lastMove = 0;
function movePointer(ev) {
  if (!presenting()) { return; }
  var now = Date.now();
  if (now - lastMove < POINTER_MS) { return; }
  lastMove = now;
  var r = img.getBoundingClientRect();
  if (!r.width || !r.height) { return; }
  var x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
  var y = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
  onPointer({ evidence_id: E.showing.evidence_id, x: x, y: y });   // my own dot moves at once
  call("evidence.pointer", { x: x, y: y });
}

// ------------------------------------------------------------------ the evidence tab

function reviewLabel(item) {
  if (!item.in_session) { return null; }
  return h("span", { className: "chip ev-review ev-" + item.review, text: t("room.evidence.review." + item.review) });
}

function renderList() {
  list.textContent = "";
  $("#evidence-empty").hidden = E.items.length > 0;
  E.items.forEach(function (item) {
    var actions = h("div", { className: "prow-actions" });
    if (E.mayPresent && item.presentable) {
      actions.appendChild(h("button", { type: "button", className: "btn btn-secondary", "data-testid": "evidence-present",
        "data-eid": String(item.id), text: t("room.evidence.present"),
        onclick: function () { steer("evidence.present", { evidence_id: item.id, page: 1 }); } }));
    }
    if (canManage() && item.review === "pending") {
      [["accept", true], ["reject", false]].forEach(function (x) {
        actions.appendChild(h("button", { type: "button", className: "btn btn-secondary", "data-testid": "evidence-" + x[0],
          "data-eid": String(item.id), text: t("room.evidence." + x[0]), onclick: async function () {
            var ack = await call("evidence.review", { evidence_id: item.id, accept: x[1] });
            if (!ack.ok) { showError(ack.error); return; }
            onItem(ack.evidence);
          } }));
      });
    }
    var by = item.in_session ? t("room.evidence.added_by", { name: item.submitted_name || "" }) : t("room.evidence.filed");
    list.appendChild(h("li", { className: "prow", "data-testid": "evidence-item", "data-eid": String(item.id) },
      h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: item.name }), reviewLabel(item)),
      h("div", { className: "small muted", text: by + " · " + Math.max(1, Math.round(item.size / 1024)) + " KB" }),
      actions.childNodes.length ? actions : null));
  });
}

function renderAllow() {
  var box = $("#evidence-allow-box");
  box.hidden = !canManage();
  if (!canManage() || !R.state) { return; }
  allowList.textContent = "";
  R.state.participants.filter(function (p) { return p.where !== "lobby" && (p.grants || []).indexOf("admit") < 0; })
    .forEach(function (p) {
      var input = h("input", { type: "checkbox", "data-testid": "evidence-allow", "data-pid": p.id });
      input.checked = !!E.allowed[p.id];
      input.addEventListener("change", async function () {
        var ack = await call("evidence.allow", { participant_id: p.id, allowed: input.checked });
        if (!ack.ok) { input.checked = !input.checked; showError(ack.error); return; }
        E.allowed[p.id] = ack.allowed;
      });
      allowList.appendChild(h("li", null, h("label", { className: "check" }, input, " " + p.name)));
    });
}
E.allowed = {};

export async function refreshEvidence() {
  var ack = await call("evidence.list", {});
  if (!ack.ok) { if (ack.error && ack.error.code !== "in_lobby") { showError(ack.error); } return; }
  E.items = ack.evidence || [];
  E.mayPresent = !!ack.may_present;
  renderList();
  renderAllow();
  if (ack.showing && !E.showing) { onShown(ack.showing); }
}

function onItem(item) {
  if (!item) { return; }
  var i = E.items.findIndex(function (x) { return x.id === item.id; });
  if (i >= 0) { E.items[i] = item; } else { E.items.push(item); }
  renderList();
}

function onSubmitted(data) {
  var item = data && data.evidence;
  if (!item) { return; }
  onItem(item);
  if (canManage() && (!R.me || item.submitted_by !== R.me.id)) {
    toast(t("room.evidence.submitted", { name: item.submitted_name || "", file: item.name }));
  }
}
function onReviewed(data) {
  var item = data && data.evidence;
  if (!item) { return; }
  onItem(item);
  if (R.me && item.submitted_by === R.me.id) { toast(t("room.evidence.reviewed." + item.review, { file: item.name })); }
}
function onAllowed(data) {
  E.mayPresent = canManage() || !!(data && data.allowed);
  toast(t(data && data.allowed ? "room.evidence.allowed" : "room.evidence.not_allowed"));
  if (sideShows("evidence")) { refreshEvidence(); } else { renderList(); }
}

async function upload(input) {
  var file = input.files && input.files[0];
  input.value = "";
  if (!file) { return; }
  var max = (CFG.evidence_max_mb || 10) * 1024 * 1024;
  if (file.size > max) { status.textContent = t("room.evidence.too_large", { mb: CFG.evidence_max_mb || 10 }); return; }
  status.textContent = t("room.evidence.uploading", { file: file.name });
  var form = new FormData();
  form.append("file", file, file.name);
  var resp, body = {};
  try {
    resp = await fetch("/api/v1/room/evidence", { method: "POST", body: form, headers: { "X-Join-Token": CFG.token } });
    body = await resp.json().catch(function () { return {}; });
  } catch (e) {
    status.textContent = t("room.evidence.upload_failed", { message: t("room.error.offline") });
    return;
  }
  if (!resp.ok) {
    var err = body.error || { code: "http_" + resp.status };
    var field = err.fields && (err.fields.file || err.fields.evidence);
    status.textContent = field && t("room.evidence.refused." + field) !== "room.evidence.refused." + field
      ? t("room.evidence.refused." + field) : t("room.evidence.upload_failed", { message: errorText(err) });
    return;
  }
  E.uploads.push(body.evidence);
  status.textContent = t("room.evidence.uploaded", { file: body.evidence.name });
  onItem(body.evidence);
}

export function wireEvidence() {
  R.evidence = E;
  img.addEventListener("load", function () { E.loaded += 1; fit(); });
  img.addEventListener("error", function () { E.failed = (E.failed || 0) + 1; });
  window.addEventListener("resize", fit);
  sheet.addEventListener("pointermove", movePointer);
  sheet.addEventListener("pointerdown", movePointer);
  $("#evidence-prev").addEventListener("click", function () { steer("evidence.page", { page: E.showing.page - 1 }); });
  $("#evidence-next").addEventListener("click", function () { steer("evidence.page", { page: E.showing.page + 1 }); });
  $("#evidence-zoom-in").addEventListener("click", function () { zoomBy(1); });
  $("#evidence-zoom-out").addEventListener("click", function () { zoomBy(-1); });
  $("#evidence-stop").addEventListener("click", async function () {
    var ack = await call("evidence.stop", {});
    if (!ack.ok) { showError(ack.error); return; }
    onStopped();
  });
  ["#evidence-photo", "#evidence-file"].forEach(function (sel) {
    $(sel).addEventListener("change", function () { upload($(sel)); });
  });
  $("[data-open=evidence]").addEventListener("click", function () { setTimeout(refreshEvidence, 0); });
  $("#side [data-tab=evidence]").addEventListener("click", function () { refreshEvidence(); });
  socketHooks.push(function (socket) {
    socket.on("evidence.shown", onShown);
    socket.on("evidence.stopped", onStopped);
    socket.on("evidence.pointer", onPointer);
    socket.on("evidence.submitted", onSubmitted);
    socket.on("evidence.reviewed", onReviewed);
    socket.on("evidence.allowed", onAllowed);
    socket.on("room.state", function () { if (sideShows("evidence")) { renderAllow(); } });
  });
}
