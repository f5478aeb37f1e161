/* Inviting an expert (mediator): the pool by specialty (experts.list, loaded when the box is
 * first opened), or a name typed in; invite.expert answers with a single-use link and its QR
 * code to copy or show, which invite.revoke takes back. */
import { CFG } from "./config.js";
import { t, has, $, $all, h, errorText } from "./dom.js";
import { call } from "./signal.js";
import { act } from "./controls.js";

var expertsLoaded = false;
var lastInviteId = null;

function fillSpecialties() {
  $all("select[data-role=specialty-filter], select[data-role=specialty]").forEach(function (sel) {
    sel.textContent = "";
    sel.appendChild(h("option", { value: "", text: sel.getAttribute("data-role") === "specialty" ? t("room.manage.choose") : t("room.manage.expert_all") }));
    (CFG.specialties || []).forEach(function (code) { sel.appendChild(h("option", { value: code, text: t("category." + code) })); });
  });
}
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

export function wireExperts() {
  fillSpecialties();
  $("#expert-find").addEventListener("submit", function (ev) { ev.preventDefault(); findExperts(); });
  $("#expert-box").addEventListener("toggle", function () { if ($("#expert-box").open && !expertsLoaded) { expertsLoaded = true; findExperts(); } });
  $("#expert-manual").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    var data = { name: f.name.value.trim(), specialty: f.specialty.value };
    if (f.organisation.value.trim()) { data.organisation = f.organisation.value.trim(); }
    if (!data.name || !data.specialty) { f.reportValidity(); return; }
    inviteExpert(data, data.name);
  });
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
}
