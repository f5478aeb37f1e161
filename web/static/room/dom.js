/* Small helpers every concern uses: translated text (t, has, roleLabel, errorText), element
 * lookup ($, $all), element building (h) and the clock the timings are measured with (now).
 * A leaf apart from config.js, so it is ready before any module that imports it. */
import { S } from "./config.js";

export function t(key, kw) {
  var s = Object.prototype.hasOwnProperty.call(S, key) ? S[key] : key;
  if (kw) { s = s.replace(/\{(\w+)\}/g, function (m, k) { return k in kw ? String(kw[k]) : m; }); }
  return s;
}
export function has(key) { return Object.prototype.hasOwnProperty.call(S, key); }
export function $(sel, root) { return (root || document).querySelector(sel); }
export function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
export function h(tag, attrs) {
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
export function roleLabel(role) { return has("room.role." + role) ? t("room.role." + role) : role; }
// A person's role as tiles and lists show it: an interpreter or support person with the party they
// accompany ("译员 · 陪同 张三", docs/procedure.md).
export function personLabel(p) {
  var role = roleLabel(p.role);
  return p.accompanies ? t("room.role.accompanies", { role: role, party: p.accompanies_name || "" }) : role;
}
export function errorText(err) {
  err = err || {};
  var code = err.code || "unknown";
  if (has("room.error." + code)) { return t("room.error." + code); }
  return t("room.error.generic", { message: err.message || code });
}
export function now() { return performance.now(); }
