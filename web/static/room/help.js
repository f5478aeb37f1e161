/* Asking for help: a party's help button (help.request, at most once per 10 s), and on the
 * mediator's side the requests (help.requested) as a toast and a list in the manage panel
 * until marked done; their number is part of the manage badge. */
import { t, $, h, now } from "./dom.js";
import { areaName } from "./state.js";
import { toast, showError } from "./toasts.js";
import { openSide, sideShows, updateControls } from "./screen.js";
import { call } from "./signal.js";

var helpSentAt = null;
var helpRequests = [];

export function helpCount() { return helpRequests.length; }

export function wireHelp() {
  $("#help-btn").addEventListener("click", async function () {
    if (helpSentAt !== null && now() - helpSentAt < 10000) { toast(t("room.help.sent")); return; }
    var ack = await call("help.request", {});
    if (!ack.ok) { showError(ack.error); return; }
    helpSentAt = now();
    toast(t("room.help.sent"), { kind: "ok" });
  });
}

export function onHelpRequested(data) {
  if (!data) { return; }
  helpRequests = helpRequests.filter(function (x) { return x.participant_id !== data.participant_id; });
  helpRequests.push(data);
  if (!sideShows("manage")) {
    toast(t("room.help.requested", { name: data.name }), { kind: "warn", ms: 10000,
      action: { label: t("room.help.show"), run: function () { openSide("manage"); } } });
  }
  renderHelp();
  updateControls();
}
function renderHelp() {
  var box = $("#help-list");
  box.textContent = "";
  helpRequests.forEach(function (r) {
    box.appendChild(h("div", { className: "notice notice-warn", "data-testid": "help-request" },
      h("span", { text: t("room.help.requested", { name: r.name }) + " · " + areaName(r.where) }),
      h("button", { type: "button", className: "btn btn-secondary btn-small", text: t("room.help.done"), onclick: function () {
        helpRequests = helpRequests.filter(function (x) { return x !== r; });
        renderHelp(); updateControls();
      } })));
  });
}
