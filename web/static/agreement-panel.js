/* The settlement agreement as a side panel of the live room (for the room's script, web/static/room/, to attach; see docs/protocol.md).
 *
 *   window.mediationAgreementPanel.attach(socket, container, {t: fn(key) -> text, lang: "zh-CN"|"en",
 *                                                            caseId: number?, isMediator: fn() -> bool})
 *
 * Listens to `agreement.draft` / `agreement.comment`, asks `agreement.get` once joined, shows the text
 * as it changes, and lets everyone admitted comment (`agreement.comment`). The mediator edits on the
 * agreement page (/staff/cases/{id}/agreement), whose changes are pushed here as well. */
(function () {
  "use strict";
  var FALLBACK = {
    "zh-CN": {
      "outcome.agreement": "人民调解协议书", "outcome.room.none": "调解员尚未起草协议。",
      "outcome.ag_status.draft": "草稿", "outcome.ag_status.final": "已定稿 · 待签署", "outcome.ag_status.effective": "已生效",
      "outcome.comment": "您的意见", "outcome.comment_send": "发送意见", "outcome.room.edit": "在协议页面编辑",
      "outcome.room.updated": "协议草稿已更新"
    },
    en: {
      "outcome.agreement": "Settlement agreement", "outcome.room.none": "No agreement has been drafted yet.",
      "outcome.ag_status.draft": "Draft", "outcome.ag_status.final": "Final · awaiting signatures",
      "outcome.ag_status.effective": "In effect", "outcome.comment": "Your comment", "outcome.comment_send": "Send",
      "outcome.room.edit": "Edit on the agreement page", "outcome.room.updated": "The draft was updated"
    }
  };

  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) { n.textContent = text; }
    return n;
  }

  function attach(socket, container, opts) {
    opts = opts || {};
    var lang = opts.lang === "en" ? "en" : "zh-CN";
    function t(key) {
      var v = opts.t ? opts.t(key) : null;
      return v && v !== key ? v : (FALLBACK[lang][key] || key);
    }
    container.textContent = "";
    var head = el("div", { "class": "agreement-head" });
    var title = el("h3", {}, t("outcome.agreement"));
    var badge = el("span", { "class": "badge", "data-testid": "room-agreement-status" });
    head.appendChild(title);
    head.appendChild(badge);
    var text = el("pre", { "class": "agreement-text", "data-testid": "room-agreement-text", tabindex: "0" }, t("outcome.room.none"));
    var comments = el("ol", { "class": "comments", "data-testid": "room-agreement-comments" });
    var form = el("form", { "class": "stack" });
    var input = el("textarea", { rows: "2", maxlength: "2000", "aria-label": t("outcome.comment"), placeholder: t("outcome.comment") });
    var send = el("button", { type: "submit", "class": "btn btn-secondary" }, t("outcome.comment_send"));
    form.appendChild(input);
    form.appendChild(send);
    container.appendChild(head);
    container.appendChild(text);
    if (opts.caseId && opts.isMediator && opts.isMediator()) {
      var edit = el("a", { href: "/staff/cases/" + opts.caseId + "/agreement", target: "_blank", rel: "noopener", "class": "btn btn-small btn-secondary" }, t("outcome.room.edit"));
      container.appendChild(edit);
    }
    container.appendChild(comments);
    container.appendChild(form);

    var current = null;
    function show(ag) {
      if (!ag) { return; }
      var changed = current && current.version !== ag.version;
      current = ag;
      text.textContent = ag.text;
      badge.textContent = t("outcome.ag_status." + ag.status);
      badge.setAttribute("data-status", ag.status);
      container.setAttribute("data-version", String(ag.version));
      form.hidden = ag.status === "effective";
      if (changed && opts.notify) { opts.notify(t("outcome.room.updated")); }
    }
    function addComment(c) {
      var li = el("li");
      li.appendChild(el("strong", {}, c.author + " "));
      li.appendChild(el("span", { "class": "muted small" }, (c.at || "").slice(11, 16)));
      li.appendChild(el("p", { "class": "prewrap" }, c.text));
      comments.appendChild(li);
    }
    socket.on("agreement.draft", show);
    socket.on("agreement.comment", addComment);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = input.value.trim();
      if (!value) { return; }
      socket.emit("agreement.comment", { text: value }, function (ack) {
        if (ack && ack.ok) { input.value = ""; } else if (opts.onError) { opts.onError(ack && ack.error); }
      });
    });
    return {
      refresh: function () {
        socket.emit("agreement.get", {}, function (ack) { if (ack && ack.ok && ack.agreement) { show(ack.agreement); } });
      },
      current: function () { return current; }
    };
  }

  window.mediationAgreementPanel = { attach: attach };
})();
