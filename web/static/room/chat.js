/* Chat: messages of my area (chat.message, deduplicated by id; my own from the chat.send ack),
 * the unread badge and a toast while the chat tab is closed, and the send form. */
import { t, $, h, roleLabel } from "./dom.js";
import { R, areaName } from "./state.js";
import { toast, showError } from "./toasts.js";
import { sideShows } from "./screen.js";
import { call } from "./signal.js";

var chatList = $("#chat-list");
var chatIds = new Set();
var unread = 0;
function updateUnread() {
  var badge = $(".controls [data-open=chat] .badge");
  badge.textContent = String(unread);
  badge.hidden = unread === 0;
}
function scrollChat() { chatList.scrollTop = chatList.scrollHeight; }
/** The chat tab was opened: nothing unread, the newest message in view. */
export function markChatRead() { unread = 0; updateUnread(); setTimeout(function () { scrollChat(); }, 0); }
function fmtTime(iso) {
  var d = iso ? new Date(iso) : new Date();
  if (isNaN(d.getTime())) { d = new Date(); }
  return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
}
export function onChat(msg) {
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
  if (!sideShows("chat")) {
    if (!mine) { unread += 1; updateUnread(); toast(t("room.chat.new", { name: msg.name, text: msg.text.slice(0, 60) })); }
  }
}

export function wireChat() {
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
}
