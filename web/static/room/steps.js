/* Steps the server may still ask for before it lets me join (a refusal of `join` with
 * consent_required, notice_required or identity_required): show the step, answer it
 * (consent.online, notice.ack, identity.verify), then join again; or decline. */
import { t, has, $, h, errorText } from "./dom.js";
import { setScreen } from "./screen.js";
import { setConn } from "./toasts.js";
import { call, join } from "./signal.js";
import { finish } from "./end.js";

var step = { code: null, err: null };
export function showStep(code, err) {
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

export function wireSteps() {
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
}
