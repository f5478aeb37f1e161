/* Caucus tools (docs/protocol.md, caucus.timer / caucus.broadcast / caucus.knock): a countdown per
 * caucus (room.state's ends_at) for its members, in a bar under the caucus banner, and for the
 * mediator in the caucus list, where the timer is set (also when creating: the minutes field);
 * the mediator's word to every caucus, shown there as a notice; "knock" from a caucus, which the
 * mediator gets as a notice naming the caucus with a button that takes them in. */
import { t, $, $all, h } from "./dom.js";
import { R, canManage, myWhere } from "./state.js";
import { toast, showError } from "./toasts.js";
import { call } from "./signal.js";

var knockedAt = 0;

function caucus(id) { return ((R.state && R.state.caucuses) || []).find(function (c) { return c.id === id; }); }

function left(iso) {
  var ms = Date.parse(iso) - Date.now();
  if (isNaN(ms)) { return ""; }
  if (ms <= 0) { return t("room.caucus.time_up"); }
  var s = Math.ceil(ms / 1000);
  return t("room.caucus.time_left", { time: Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2) });
}
function tick() {
  $all("[data-ends]").forEach(function (el) {
    var iso = el.getAttribute("data-ends");
    el.textContent = iso ? left(iso) : "";
    el.classList.toggle("over", !!iso && Date.parse(iso) <= Date.now());
  });
}

function render() {
  var bar = $("#caucus-bar");
  var where = myWhere();
  var c = caucus(where);
  bar.hidden = !c;
  var timer = bar.querySelector("[data-testid=caucus-timer]");
  timer.setAttribute("data-ends", (c && c.ends_at) || "");
  timer.hidden = !(c && c.ends_at);
  bar.querySelector("[data-testid=knock]").hidden = !c || canManage();
  if (!c) { bar.querySelector(".caucus-word").hidden = true; }
  var bc = $("#broadcast-form");
  if (bc) { bc.hidden = !canManage() || !((R.state && R.state.caucuses) || []).length; }
  decorateCaucuses();
  tick();
}

function decorateCaucuses() {
  if (!canManage()) { return; }
  $all("#caucus-list li.crow[data-caucus]").forEach(function (li) {
    var c = caucus(li.getAttribute("data-caucus"));
    if (!c) { return; }
    var chip = li.querySelector("[data-testid=caucus-list-timer]");
    if (!chip) {
      chip = h("span", { className: "chip chip-where caucus-left", "data-testid": "caucus-list-timer" });
      li.firstChild.appendChild(document.createTextNode(" "));
      li.firstChild.appendChild(chip);
      li.appendChild(h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "caucus-set-timer",
        text: t("room.caucus.set_timer"), onclick: function () { setTimer(c.id); } }));
    }
    chip.setAttribute("data-ends", c.ends_at || "");
    chip.hidden = !c.ends_at;
  });
}

async function setTimer(id) {
  var answer = window.prompt(t("room.caucus.timer_prompt"), "10");
  if (answer === null) { return; }
  var minutes = parseInt(answer, 10);
  if (isNaN(minutes) || minutes < 0 || minutes > 240) { toast(t("room.caucus.timer_bad"), { kind: "error" }); return; }
  var ack = await call("caucus.timer", { caucus_id: id, minutes: minutes });
  if (!ack.ok) { showError(ack.error); }
}

function onBroadcast(data) {
  if (!data || !data.text) { return; }
  var word = $("#caucus-bar .caucus-word");
  word.textContent = t("room.caucus.word", { name: data.name || t("room.role.mediator") }) + data.text;
  word.hidden = false;
  toast(t("room.caucus.word", { name: data.name || t("room.role.mediator") }) + data.text, { kind: "warn", ms: 12000 });
}

function onKnocked(data) {
  if (!data) { return; }
  toast(t("room.caucus.knocked", { name: data.name, caucus: data.caucus }), { kind: "warn", ms: 20000, key: "knock:" + data.caucus_id,
    action: { label: t("room.caucus.go_in"), run: async function () {
      var ack = await call("participant.move", { participant_id: R.me.id, to: data.caucus_id });
      if (!ack.ok) { showError(ack.error); }
    } } });
}

export function wireCaucusTools() {
  var banner = $("#area-banner");
  banner.parentNode.insertBefore(h("div", { id: "caucus-bar", className: "caucus-bar", "data-testid": "caucus-bar", hidden: true },
    h("span", { className: "caucus-left", "data-testid": "caucus-timer", role: "timer", hidden: true }),
    h("span", { className: "caucus-word", "data-testid": "caucus-word", role: "status", hidden: true }),
    h("button", { type: "button", className: "btn btn-secondary btn-small", "data-testid": "knock", text: t("room.caucus.knock"),
      onclick: async function () {
        if (Date.now() - knockedAt < 10000) { toast(t("room.caucus.knock_sent")); return; }
        var ack = await call("caucus.knock", {});
        if (!ack.ok) { showError(ack.error); return; }
        knockedAt = Date.now();
        toast(t("room.caucus.knock_sent"), { kind: "ok" });
      } })), banner.nextSibling);
  var form = $("#caucus-form");
  if (form) {
    form.insertBefore(h("input", { id: "caucus-minutes", type: "number", min: "1", max: "240", inputmode: "numeric",
      placeholder: t("room.caucus.minutes"), "aria-label": t("room.caucus.minutes"), "data-testid": "caucus-minutes", className: "caucus-minutes" }),
      form.querySelector("button"));
    var bc = h("form", { id: "broadcast-form", className: "inline-form", autocomplete: "off", hidden: true },
      h("input", { id: "broadcast-text", maxlength: "500", placeholder: t("room.caucus.broadcast_placeholder"),
        "aria-label": t("room.caucus.broadcast_placeholder"), "data-testid": "broadcast-text" }),
      h("button", { type: "submit", className: "btn btn-secondary", "data-testid": "broadcast-send", text: t("room.caucus.broadcast") }));
    bc.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var input = $("#broadcast-text");
      var text = input.value.trim();
      if (!text) { return; }
      var ack = await call("caucus.broadcast", { text: text });
      if (!ack.ok) { showError(ack.error); return; }
      input.value = "";
      toast(t("room.caucus.broadcast_sent", { n: ack.recipients }), { kind: "ok" });
    });
    form.parentNode.insertBefore(bc, form.nextSibling);
    new MutationObserver(decorateCaucuses).observe($("#caucus-list"), { childList: true });
  }
  setInterval(tick, 1000);
  document.addEventListener("room:state", render);
  document.addEventListener("room:socket", function (ev) {
    ev.detail.on("caucus.broadcast", onBroadcast);
    ev.detail.on("caucus.knocked", onKnocked);
  });
}

/** The minutes typed into the create form (controls.js sends them with caucus.create), then cleared. */
export function takeMinutes() {
  var input = $("#caucus-minutes");
  if (!input) { return null; }
  var n = parseInt(input.value, 10);
  input.value = "";
  return n >= 1 && n <= 240 ? n : null;
}
