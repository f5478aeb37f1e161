/* What the page tells the user in passing: toasts (some keyed, so that one can be taken back
 * when it no longer applies), the error toast that also lands in R.errors, the banner at the
 * top (reconnecting...) and the connection indicator in the header. */
import { t, $, h, errorText } from "./dom.js";
import { R } from "./state.js";

var toastBox = $("#toasts");
export var keyedToasts = new Map();   // e.g. "lobby:<pid>" -> toast, dropped when it no longer applies
export function toast(text, opts) {
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
export function dropToast(key) {
  var old = keyedToasts.get(key);
  if (old) { old.remove(); keyedToasts.delete(key); }
}
/** Every toast gone at once (the end screen). */
export function clearToasts() {
  toastBox.textContent = "";
  keyedToasts.clear();
}
export function showError(err) { R.errors.push(err); toast(errorText(err), { kind: "error", ms: 7000 }); }

var banner = $("#banner");
export function setBanner(text) { if (text) { banner.textContent = text; banner.hidden = false; } else { banner.hidden = true; } }
var conn = $("#conn");
export function setConn(state) {
  conn.setAttribute("data-state", state);
  conn.textContent = "";
  conn.appendChild(h("span", { className: "conn-text", text: t("room.conn." + state) }));
}
