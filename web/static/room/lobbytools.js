/* The lobby beyond admitting (docs/protocol.md, lobby.message, participant.move to "lobby"): the
 * mediator messages everyone waiting or one person and sees how long each has waited (room.state's
 * lobby_since); the waiting page shows the messages; the mediator sends someone in the room (main
 * or a caucus) back to the lobby. The manage panel's rows are drawn by controls.js; this module
 * adds its parts to them whenever they are drawn anew. */
import { t, $, h } from "./dom.js";
import { R, canManage, person } from "./state.js";
import { toast, showError } from "./toasts.js";
import { call } from "./signal.js";

function waited(iso) {
  var since = Date.parse(iso);
  if (isNaN(since)) { return ""; }
  var min = Math.max(0, Math.floor((Date.now() - since) / 60000));
  return min < 1 ? t("room.lobby.waited_new") : t("room.lobby.waited", { min: min });
}

async function send(ev) {
  ev.preventDefault();
  var form = $("#lobby-message-form");
  var input = form.querySelector("input");
  var text = input.value.trim();
  if (!text) { return; }
  var data = { text: text.slice(0, 500) };
  var to = form.querySelector("select").value;
  if (to) { data.participant_id = to; }
  var ack = await call("lobby.message", data);
  if (!ack.ok) { showError(ack.error); return; }
  input.value = "";
  toast(t("room.lobby.message_sent", { n: ack.recipients }), { kind: "ok" });
}

/** The message form's choice: everyone waiting, or one of them (a row's button picks that one). */
function renderRecipients(pick) {
  var sel = $("#lobby-message-form select");
  var keep = pick !== undefined ? pick : sel.value;
  sel.textContent = "";
  sel.appendChild(h("option", { value: "", text: t("room.lobby.to_all") }));
  var waiting = (R.state ? R.state.participants : []).filter(function (p) { return p.where === "lobby"; });
  waiting.forEach(function (p) { sel.appendChild(h("option", { value: p.id, text: p.name })); });
  sel.value = waiting.some(function (p) { return p.id === keep; }) ? keep : "";
  $("#lobby-message-form").hidden = !waiting.length;
}

function decorateLobby() {
  if (!canManage()) { return; }
  document.querySelectorAll("#lobby-list li.prow.lobby[data-pid]:not([data-testid=device-row])").forEach(function (li) {
    var p = person(li.getAttribute("data-pid"));
    if (!p) { return; }
    var chip = li.querySelector("[data-testid=lobby-waited]");
    if (!chip) {
      chip = h("span", { className: "chip chip-where", "data-testid": "lobby-waited" });
      li.querySelector(".prow-head").appendChild(chip);
      li.querySelector(".prow-actions").appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small",
        "data-testid": "lobby-message-one", "data-pid": p.id, text: t("room.lobby.message"), onclick: function () {
          renderRecipients(p.id);
          $("#lobby-message-form input").focus();
        } }));
    }
    chip.setAttribute("data-since", p.lobby_since || "");
    chip.textContent = waited(p.lobby_since);
  });
  if ($("#lobby-message-form")) { renderRecipients(); }
}

function decoratePeople() {
  if (!canManage()) { return; }
  document.querySelectorAll("#people-list li.prow[data-pid]").forEach(function (li) {
    var p = person(li.getAttribute("data-pid"));
    if (!p || p.role === "mediator" || li.querySelector("[data-testid=send-lobby]")) { return; }
    li.querySelector(".prow-actions").appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small",
      "data-testid": "send-lobby", "data-pid": p.id, text: t("room.lobby.send_back"), onclick: async function () {
        if (!window.confirm(t("room.lobby.send_back_confirm", { name: p.name }))) { return; }
        var ack = await call("participant.move", { participant_id: p.id, to: "lobby" });
        if (!ack.ok) { showError(ack.error); return; }
        toast(t("room.lobby.sent_back", { name: p.name }), { kind: "ok" });
      } }));
  });
}

// ------------------------------------------------------------------ the waiting page

function onLobbyMessage(data) {
  if (!data || !data.text) { return; }
  var box = $("#lobby-messages");
  box.hidden = false;
  var d = new Date(data.at);
  var at = isNaN(d.getTime()) ? "" : ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  box.insertBefore(h("li", { className: "lobby-msg", "data-testid": "lobby-message" },
    h("div", { className: "msg-head" }, h("strong", { text: data.name || t("room.role.mediator") }), h("time", { text: at })),
    h("div", { className: "msg-text", text: data.text })), box.firstChild);
  toast(t("room.lobby.message_from", { name: data.name || t("room.role.mediator") }) + data.text.slice(0, 80), { kind: "warn", ms: 8000 });
}

export function wireLobbyTools() {
  var card = $("#screen-lobby .card");
  if (card) {
    card.insertBefore(h("ol", { id: "lobby-messages", className: "lobby-messages", "data-testid": "lobby-messages", hidden: true,
      "aria-live": "polite" }), card.querySelector("[data-slot=lobby]"));
  }
  var list = $("#lobby-list");
  if (list) {
    var form = h("form", { id: "lobby-message-form", className: "lobby-message-form", autocomplete: "off", hidden: true,
      "data-testid": "lobby-message-form" },
      h("select", { "aria-label": t("room.lobby.message_to"), "data-testid": "lobby-message-to" }),
      h("div", { className: "inline-form" },
        h("input", { maxlength: "500", placeholder: t("room.lobby.message_placeholder"), "aria-label": t("room.lobby.message_placeholder"),
          "data-testid": "lobby-message-text" }),
        h("button", { type: "submit", className: "btn btn-secondary", "data-testid": "lobby-message-send", text: t("room.lobby.message_send") })));
    form.addEventListener("submit", send);
    list.parentNode.insertBefore(form, list.nextSibling);
    new MutationObserver(decorateLobby).observe(list, { childList: true });
  }
  var people = $("#people-list");
  if (people) { new MutationObserver(decoratePeople).observe(people, { childList: true }); }
  document.addEventListener("room:state", function () { decorateLobby(); decoratePeople(); });
  setInterval(decorateLobby, 15000);   // the waits grow
  document.addEventListener("room:socket", function (ev) {
    ev.detail.on("lobby.message", onLobbyMessage);
  });
  // Admitted again (or first): the old lobby messages go.
  document.addEventListener("room:state", function () {
    var box = $("#lobby-messages");
    if (box && R.screen === "room" && box.children.length) { box.textContent = ""; box.hidden = true; }
  });
}
