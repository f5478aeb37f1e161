/* The steps before the live room (/join/<token>/checks): consent to online mediation, identity,
   notices. Everything goes over socket.io: `procedure.check` says what is still owed, the step
   events (`consent.online`, `identity.verify`, `identity.sms_request`, `notice.ack`) satisfy it,
   and when nothing is left the page links to the room. */
(function () {
  "use strict";
  var CFG = JSON.parse(document.getElementById("procedure-config").textContent);
  var S = CFG.strings || {};
  function t(key, kw) {
    var text = S[key] || key;
    if (kw) { Object.keys(kw).forEach(function (k) { text = text.split("{" + k + "}").join(String(kw[k])); }); }
    return text;
  }
  function $(sel) { return document.querySelector(sel); }
  var state = { steps: [], next: null, busy: false };
  window.mediationSteps = state;   // for tests and support: what the page believes is owed

  var steps = ["consent", "offline", "identity", "notices", "done"];
  function show(name) {
    steps.forEach(function (s) { $("#step-" + s).hidden = s !== name; });
    $("#proc-loading").hidden = true;
    state.screen = name;
    var order = ["consent_required", "identity_required", "notice_required"];
    var current = { consent: 0, offline: 0, identity: 1, notices: 2, done: 3 }[name];
    document.querySelectorAll("#proc-progress li").forEach(function (li) {
      var i = order.indexOf(li.getAttribute("data-step"));
      var owed = state.steps.indexOf(li.getAttribute("data-step")) >= 0;
      li.className = i === current ? "current" : (!owed ? "done" : "");
      if (li.getAttribute("data-step") === "identity_required" && !CFG.identity_check) { li.hidden = true; }
    });
    var focus = $("#step-" + name + " h2");
    if (focus) { focus.setAttribute("tabindex", "-1"); focus.focus(); }
  }
  function problem(text) {
    var el = $("#proc-error");
    el.textContent = text || "";
    el.hidden = !text;
  }
  function errText(err) {
    if (!err) { return t("procedure.error.offline"); }
    var key = "procedure.error." + err.code;
    if (S[key]) {
      return t(key) + (typeof err.attempts_left === "number" && err.attempts_left > 0
        ? (CFG.lang === "en" ? " " : "") + t("procedure.page.identity.attempts_left", { n: err.attempts_left }) : "");
    }
    return err.message || err.code;
  }

  var socket = io({ path: "/socket.io/", transports: ["websocket", "polling"], reconnection: true });
  function call(event, data) {
    return new Promise(function (resolve) {
      if (!socket.connected) { resolve({ ok: false, error: { code: "offline" } }); return; }
      socket.timeout(15000).emit(event, data || {}, function (err, ack) {
        resolve(err ? { ok: false, error: { code: "timeout" } } : ack);
      });
    });
  }

  async function refresh() {
    var ack = await call("procedure.check", { token: CFG.token, lang: CFG.lang });
    if (!ack.ok) { problem(errText(ack.error)); $("#proc-loading").hidden = true; return; }
    problem("");
    state.steps = ack.steps || [];
    state.next = ack.next;
    state.participant = ack.participant;
    $("#enter-room").href = CFG.room_url;
    render();
  }

  function render() {
    var next = state.next;
    if (!next) { show("done"); return; }
    if (next.code === "consent_required") {
      if (next.declined && next.offline) { $("#offline-text").textContent = next.offline.text; show("offline"); }
      else { show("consent"); }
    } else if (next.code === "identity_required") {
      $("#id-code-hint").textContent = next.applicant ? t("procedure.page.identity.code_applicant")
        : t("procedure.page.identity.code_party");
      $("#sms-box").hidden = (next.methods || []).indexOf("sms") < 0;
      var locked = next.locked || next.attempts_left === 0;
      $("#identity-submit").disabled = !!locked;
      if (locked) { identityError(t("procedure.error.identity_locked")); }
      show("identity");
    } else if (next.code === "notice_required") {
      var list = $("#notice-list");
      list.textContent = "";
      (next.notices || []).forEach(function (n) {
        var box = document.createElement("div");
        box.className = "notice notice-warn proc-notice";
        var h = document.createElement("h3"); h.textContent = n.title; box.appendChild(h);
        var p = document.createElement("p"); p.textContent = n.text; box.appendChild(p);
        var label = document.createElement("label"); label.className = "check";
        var input = document.createElement("input"); input.type = "checkbox"; input.name = "notice"; input.value = n.id;
        input.setAttribute("data-testid", "notice-" + n.id);
        label.appendChild(input);
        label.appendChild(document.createTextNode(" " + t("procedure.page.notices.read")));
        box.appendChild(label);
        list.appendChild(box);
      });
      show("notices");
    } else {
      problem(errText(next));
    }
  }

  async function consent(agree) {
    if (state.busy) { return; }
    state.busy = true;
    var ack = await call("consent.online", { agree: agree });
    state.busy = false;
    if (!ack.ok) { problem(errText(ack.error)); return; }
    if (!agree && ack.offline) {
      $("#offline-text").textContent = ack.offline.text;
      state.steps = ack.steps || state.steps;
      show("offline");
      return;
    }
    await refresh();
  }
  $("#consent-yes").addEventListener("click", function () { consent(true); });
  $("#consent-again").addEventListener("click", function () { consent(true); });
  $("#consent-no").addEventListener("click", function () { consent(false); });

  function identityError(text) {
    var el = $("#identity-error");
    el.textContent = text || "";
    el.hidden = !text;
  }
  async function verify(data) {
    if (state.busy) { return; }
    state.busy = true;
    $("#identity-submit").disabled = true;
    var ack = await call("identity.verify", data);
    state.busy = false;
    if (!ack.ok) {
      identityError(errText(ack.error));
      $("#identity-submit").disabled = ack.error && ack.error.code === "identity_locked";
      return;
    }
    identityError("");
    $("#identity-submit").disabled = false;
    await refresh();
  }
  $("#step-identity").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    var data = { name: f.name.value.trim(), id_number_last6: f.id_number_last6.value.trim().toUpperCase(),
      access_code: f.access_code.value.trim().toUpperCase() };
    if (!data.name || data.id_number_last6.length !== 6 || data.access_code.length < 4) {
      identityError(t("procedure.page.identity.fill_all"));
      return;
    }
    verify(data);
  });
  $("#sms-send").addEventListener("click", async function () {
    var ack = await call("identity.sms_request", {});
    $("#sms-status").textContent = ack.ok ? t("procedure.page.sms.sent", { to: ack.sent_to }) : errText(ack.error);
  });
  $("#sms-submit").addEventListener("click", function () {
    var code = $("#sms-code").value.trim();
    if (!/^[0-9]{6}$/.test(code)) { identityError(t("procedure.page.sms.six_digits")); return; }
    verify({ sms_code: code });
  });

  $("#step-notices").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var boxes = Array.prototype.slice.call(document.querySelectorAll("#notice-list input[name=notice]"));
    var err = $("#notice-error");
    if (boxes.some(function (b) { return !b.checked; })) {
      err.textContent = t("procedure.page.notices.tick_all");
      err.hidden = false;
      return;
    }
    err.hidden = true;
    var ack = await call("notice.ack", { notices: boxes.map(function (b) { return b.value; }) });
    if (!ack.ok) { err.textContent = errText(ack.error); err.hidden = false; return; }
    await refresh();
  });

  $("#recusal-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var reason = ev.target.reason.value.trim();
    if (reason.length < 2) { $("#recusal-status").textContent = t("procedure.page.recusal.need_reason"); return; }
    var ack = await call("recusal.request", { reason: reason });
    $("#recusal-status").textContent = ack.ok ? t("procedure.page.recusal.sent") : errText(ack.error);
    if (ack.ok) { ev.target.reason.value = ""; }
  });

  socket.on("connect", function () { refresh(); });
  socket.on("connect_error", function () { problem(t("procedure.error.offline")); });
})();
