/* The e-transcript (笔录) tab (docs/protocol.md, transcript.*): the mediator writes, corrects and
 * takes out entries of the area they are in, each attributed to someone in the room or to both
 * parties, then closes it for review and sees who has signed off; everyone else reads their
 * area's entries live. On closing each party reviews the main room's entries in a dialog and
 * confirms, or objects with a note; once final, the PDF is a link (/room/<token>/transcript.pdf). */
import { CFG } from "./config.js";
import { t, $, h, roleLabel, errorText, personLabel } from "./dom.js";
import { R, myWhere, areaName } from "./state.js";
import { toast, showError } from "./toasts.js";
import { call } from "./signal.js";

var panel = null;
var entries = new Map();        // id -> entry (every area the server told me of)
var status = { status: "open", mode: "confirm", revision: 0, signoffs: [], pdf_sha256: null };
var loadedWhere = null;
var editing = null;             // the entry being corrected
var review = null;              // the last transcript.review
var mySignoff = null;           // my answer to this revision (a party)
var dialog = null;

function isMediator() { return !!(R.me && R.me.role === "mediator"); }
function isParty() { return !!(R.me && R.me.role === "party"); }
function clock(iso) {
  var d = new Date(iso);
  if (isNaN(d.getTime())) { return ""; }
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) { return ("0" + n).slice(-2); }).join(":");
}
function pdfUrl() { return "/room/" + encodeURIComponent(CFG.token) + "/transcript.pdf"; }
function speakerLabel(e) {
  return e.speaker_id === "parties" ? t("room.transcript.both_parties") : e.speaker_name + "（" + roleLabel(e.speaker_role) + "）";
}

function build() {
  panel = $("#panel-transcript");
  if (!panel) { return; }
  panel.appendChild(h("p", { className: "tr-status small", "data-testid": "transcript-status" }));
  panel.appendChild(h("ol", { className: "tr-list", "data-testid": "transcript-list", "aria-live": "polite" }));
  panel.appendChild(h("p", { className: "muted small tr-empty", text: t("room.transcript.empty") }));
  var form = h("form", { className: "tr-form", "data-testid": "transcript-form", autocomplete: "off", hidden: true },
    h("label", { className: "field" }, h("span", { text: t("room.transcript.speaker") }),
      h("select", { "data-testid": "transcript-speaker", name: "speaker" })),
    h("label", { className: "field" }, h("span", { text: t("room.transcript.text") }),
      h("textarea", { "data-testid": "transcript-text", name: "text", rows: "3", maxlength: "4000", required: true })),
    h("div", { className: "tr-form-actions" },
      h("button", { type: "submit", className: "btn btn-primary", "data-testid": "transcript-add", text: t("room.transcript.add") }),
      h("button", { type: "button", className: "btn btn-secondary", "data-testid": "transcript-cancel", hidden: true,
        text: t("room.transcript.cancel"), onclick: function () { stopEditing(); } })));
  form.addEventListener("submit", submit);
  panel.appendChild(form);
  panel.appendChild(h("div", { className: "tr-close", hidden: true },
    h("button", { type: "button", className: "btn btn-secondary", "data-testid": "transcript-close", text: t("room.transcript.close"),
      onclick: closeForReview })));
  panel.appendChild(h("ul", { className: "tr-signoffs plist", "data-testid": "transcript-signoffs", hidden: true }));
  panel.appendChild(h("button", { type: "button", className: "btn btn-primary tr-review-btn", "data-testid": "transcript-review-open",
    hidden: true, text: t("room.transcript.review_open"), onclick: function () { openReview(); } }));
  panel.appendChild(h("a", { className: "btn btn-secondary tr-pdf", "data-testid": "transcript-pdf", href: pdfUrl(), hidden: true,
    download: "", text: t("room.transcript.pdf") }));
}

async function load() {
  var ack = await call("transcript.list", {});
  if (!ack.ok) { return; }
  entries.clear();
  (ack.entries || []).forEach(function (e) { entries.set(e.id, e); });
  status = { status: ack.status, mode: ack.mode, revision: ack.revision, signoffs: ack.signoffs || [], pdf_sha256: ack.pdf_sha256 };
  render();
}

function shown() {
  var where = myWhere();
  return Array.from(entries.values()).filter(function (e) { return e.area === where; })
    .sort(function (a, b) { return a.seq - b.seq; });
}

function renderSpeakers() {
  var sel = panel.querySelector("[data-testid=transcript-speaker]");
  var keep = sel.value;
  sel.textContent = "";
  var where = myWhere();
  var people = (R.state ? R.state.participants : []).filter(function (p) { return p.where === where; });
  var order = { mediator: 0, party: 1, interpreter: 2, support: 2, expert: 3, observer: 4 };
  var rank = function (p) { return p.role in order ? order[p.role] : 5; };
  people.sort(function (a, b) { return (rank(a) - rank(b)) || a.name.localeCompare(b.name); });
  people.forEach(function (p) { sel.appendChild(h("option", { value: p.id, text: p.name + "（" + personLabel(p) + "）" })); });
  sel.appendChild(h("option", { value: "parties", text: t("room.transcript.both_parties") }));
  if (keep && Array.prototype.some.call(sel.options, function (o) { return o.value === keep; })) { sel.value = keep; }
  else { var firstParty = people.find(function (p) { return p.role === "party"; }); if (firstParty) { sel.value = firstParty.id; } }
}

export function render() {
  if (!panel || !R.me) { return; }
  var list = panel.querySelector("[data-testid=transcript-list]");
  list.textContent = "";
  var rows = shown();
  var open = status.status === "open";
  rows.forEach(function (e) {
    var li = h("li", { className: "tr-entry" + (editing && editing.id === e.id ? " editing" : ""), "data-testid": "transcript-entry", "data-id": String(e.id) },
      h("div", { className: "tr-head" }, h("time", { text: clock(e.at) }), h("strong", { text: speakerLabel(e) })),
      h("div", { className: "tr-text", text: e.text }));
    if (isMediator() && open) {
      li.appendChild(h("div", { className: "prow-actions" },
        h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "transcript-edit", text: t("room.transcript.edit"),
          onclick: function () { startEditing(e); } }),
        h("button", { type: "button", className: "btn btn-danger btn-small", "data-testid": "transcript-delete", text: t("room.transcript.delete"),
          onclick: function () { remove(e); } })));
    }
    list.appendChild(li);
  });
  panel.querySelector(".tr-empty").hidden = rows.length > 0;
  var where = myWhere();
  var statusText = t("room.transcript.status." + status.status) +
    (where && where !== "main" && where !== "lobby" ? " · " + t("room.transcript.caucus_note", { name: areaName(where) }) : "");
  panel.querySelector("[data-testid=transcript-status]").textContent = statusText;
  var form = panel.querySelector("form");
  form.hidden = !isMediator() || status.status === "final";
  if (isMediator()) { renderSpeakers(); }
  panel.querySelector(".tr-close").hidden = !isMediator() || status.status === "final" || where !== "main";
  panel.querySelector("[data-testid=transcript-close]").textContent =
    t(status.status === "review" ? "room.transcript.close_again" : "room.transcript.close");
  renderSignoffs();
  panel.querySelector("[data-testid=transcript-review-open]").hidden = !(isParty() && status.status === "review" && !(mySignoff && mySignoff.agree));
  panel.querySelector("[data-testid=transcript-pdf]").hidden = status.status !== "final";
}

function renderSignoffs() {
  var box = panel.querySelector("[data-testid=transcript-signoffs]");
  box.textContent = "";
  box.hidden = !isMediator() || status.status === "open";
  if (box.hidden) { return; }
  var latest = {};
  (status.signoffs || []).forEach(function (so) { if (so.revision === status.revision) { latest[so.participant_id] = so; } });
  var parties = (R.state ? R.state.participants : []).filter(function (p) { return p.role === "party"; });
  Object.keys(latest).forEach(function (pid) {
    if (!parties.some(function (p) { return p.id === pid; })) { parties.push({ id: pid, name: latest[pid].name }); }
  });
  parties.forEach(function (p) {
    var so = latest[p.id];
    var state = so ? (so.agree ? "agreed" : "disputed") : (status.status === "final" ? "agreed" : "waiting");
    box.appendChild(h("li", { className: "prow tr-signoff", "data-testid": "transcript-signoff", "data-pid": p.id, "data-state": state },
      h("div", { className: "prow-head" }, h("span", { className: "prow-name", text: p.name }),
        h("span", { className: "chip " + (state === "disputed" ? "chip-warn" : "chip-where"), text: t("room.transcript.signoff." + state) })),
      so && !so.agree && so.note ? h("p", { className: "small", text: so.note }) : null));
  });
}

function startEditing(e) {
  editing = e;
  var form = panel.querySelector("form");
  form.querySelector("textarea").value = e.text;
  var sel = form.querySelector("select");
  if (Array.prototype.some.call(sel.options, function (o) { return o.value === e.speaker_id; })) { sel.value = e.speaker_id; }
  form.querySelector("[data-testid=transcript-add]").textContent = t("room.transcript.save");
  form.querySelector("[data-testid=transcript-cancel]").hidden = false;
  form.querySelector("textarea").focus();
  render();
}
function stopEditing() {
  editing = null;
  var form = panel.querySelector("form");
  form.querySelector("textarea").value = "";
  form.querySelector("[data-testid=transcript-add]").textContent = t("room.transcript.add");
  form.querySelector("[data-testid=transcript-cancel]").hidden = true;
  render();
}

async function submit(ev) {
  ev.preventDefault();
  var form = panel.querySelector("form");
  var text = form.querySelector("textarea").value.trim();
  if (!text) { return; }
  var data = { text: text, speaker_id: form.querySelector("select").value };
  var btn = form.querySelector("[data-testid=transcript-add]");
  btn.disabled = true;
  var ack = editing ? await call("transcript.edit", Object.assign({ entry_id: editing.id }, data)) : await call("transcript.add", data);
  btn.disabled = false;
  if (!ack.ok) { showError(ack.error); return; }
  onEntry(ack.entry);
  stopEditing();
}

async function remove(e) {
  if (!window.confirm(t("room.transcript.delete_confirm", { text: e.text.slice(0, 40) }))) { return; }
  var ack = await call("transcript.delete", { entry_id: e.id });
  if (!ack.ok) { showError(ack.error); return; }
  onDeleted({ entry_id: e.id });
}

async function closeForReview() {
  if (!window.confirm(t("room.transcript.close_confirm"))) { return; }
  var ack = await call("transcript.close", { mode: "confirm" });
  if (!ack.ok) { showError(ack.error); return; }
  onReview(ack.review);
}

function onEntry(e) {
  if (!e) { return; }
  entries.set(e.id, e);
  render();
}
function onDeleted(data) {
  if (!data) { return; }
  entries.delete(data.entry_id);
  if (editing && editing.id === data.entry_id) { stopEditing(); }
  render();
}
function onReview(data) {
  if (!data) { return; }
  review = data;
  mySignoff = null;
  status.status = "review"; status.mode = data.mode; status.revision = data.revision;
  status.signoffs = (status.signoffs || []).filter(function (so) { return so.revision === data.revision; });
  (data.entries || []).forEach(function (e) { entries.set(e.id, e); });
  render();
  if (isParty()) { openReview(); }
}
function onSignoff(data) {
  if (!data) { return; }
  status.signoffs = (status.signoffs || []).filter(function (so) { return so.participant_id !== data.participant_id || so.revision !== data.revision; });
  status.signoffs.push(data);
  render();
  toast(t(data.agree ? "room.transcript.signed" : "room.transcript.disputed", { name: data.name }), { kind: data.agree ? "ok" : "warn" });
}
function onFinalized(data) {
  status.status = "final";
  status.pdf_sha256 = data && data.pdf_sha256;
  closeReview();
  render();
  toast(t("room.transcript.finalized"), { kind: "ok", ms: 8000, action: { label: t("room.transcript.pdf"), run: function () { window.open(pdfUrl(), "_blank"); } } });
}

// ------------------------------------------------------------------ a party's review, on the phone

function openReview() {
  if (!dialog) {
    dialog = h("div", { className: "overlay tr-dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": "tr-dialog-title",
      "data-testid": "transcript-review", hidden: true },
      h("div", { className: "card" },
        h("h2", { id: "tr-dialog-title", text: t("room.transcript.review_title") }),
        h("p", { className: "small", text: t("room.transcript.review_text") }),
        h("ol", { className: "tr-list tr-review-list" }),
        h("label", { className: "check tr-consent", hidden: true }, h("input", { type: "checkbox", name: "recording_consent" }),
          " " + t("room.transcript.recording_consent")),
        h("label", { className: "field tr-note", hidden: true }, h("span", { text: t("room.transcript.note") }),
          h("textarea", { name: "note", rows: "3", maxlength: "2000", "data-testid": "transcript-note" })),
        h("p", { className: "notice notice-error tr-error", hidden: true }),
        h("div", { className: "actions" },
          h("button", { type: "button", className: "btn btn-primary", "data-testid": "transcript-confirm", text: t("room.transcript.confirm"),
            onclick: function () { answer(true); } }),
          h("button", { type: "button", className: "btn btn-secondary", "data-testid": "transcript-dispute", text: t("room.transcript.dispute"),
            onclick: function () { answer(false); } }),
          h("button", { type: "button", className: "btn-link small", text: t("room.transcript.later"), onclick: closeReview }))));
    document.body.appendChild(dialog);
  }
  var list = dialog.querySelector(".tr-review-list");
  list.textContent = "";
  var rows = review ? review.entries : Array.from(entries.values()).filter(function (e) { return e.area === "main"; });
  rows.slice().sort(function (a, b) { return a.seq - b.seq; }).forEach(function (e) {
    list.appendChild(h("li", { className: "tr-entry", "data-testid": "transcript-review-entry" },
      h("div", { className: "tr-head" }, h("time", { text: clock(e.at) }), h("strong", { text: speakerLabel(e) })),
      h("div", { className: "tr-text", text: e.text })));
  });
  var recording = (review ? review.mode : status.mode) === "recording";
  dialog.querySelector(".tr-consent").hidden = !recording;
  dialog.querySelector(".tr-note").hidden = true;
  dialog.querySelector(".tr-error").hidden = true;
  dialog.hidden = false;
}
function closeReview() { if (dialog) { dialog.hidden = true; } }

async function answer(agree) {
  var note = dialog.querySelector(".tr-note");
  if (!agree && note.hidden) { note.hidden = false; note.querySelector("textarea").focus(); return; }  // first tap: say why
  var data = { agree: agree };
  if (!agree) { data.note = note.querySelector("textarea").value.trim(); }
  if ((review ? review.mode : status.mode) === "recording") { data.recording_consent = dialog.querySelector("[name=recording_consent]").checked; }
  var ack = await call("transcript.confirm", data);
  if (!ack.ok) {
    var err = dialog.querySelector(".tr-error");
    err.textContent = errorText(ack.error);
    err.hidden = false;
    return;
  }
  mySignoff = { agree: agree };
  closeReview();
  toast(t(agree ? "room.transcript.you_confirmed" : "room.transcript.you_disputed"), { kind: "ok" });
  if (ack.finalized) { onFinalized({ pdf_sha256: ack.pdf_sha256 }); } else { render(); }
}

// ------------------------------------------------------------------ wiring

function onState() {
  var where = myWhere();
  if (!where || where === "lobby") { loadedWhere = null; return; }
  if (loadedWhere !== where) { loadedWhere = where; if (editing) { stopEditing(); } load(); return; }
  render();
}

export function wireTranscript() {
  build();
  document.addEventListener("room:state", onState);
  document.addEventListener("room:socket", function (ev) {
    var socket = ev.detail;
    socket.on("transcript.entry", onEntry);
    socket.on("transcript.deleted", onDeleted);
    socket.on("transcript.review", onReview);
    socket.on("transcript.signoff", onSignoff);
    socket.on("transcript.finalized", onFinalized);
    socket.on("connect", function () { loadedWhere = null; });   // reload what I missed once back in
  });
}
