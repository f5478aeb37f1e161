/* Link quality as room.state tells it (docs/protocol.md "Server events"): the three-bar
 * indicator of a participant's `quality` (good / fair / poor / null = not measured yet), the
 * mediator's figures of each link (`link`: loss, round trip, kbit/s each way), my own bars on the
 * self view, and the advice to switch to audio only when my own link has been poor for more than
 * 5 s (at most once a minute, never while audio only is on). */
import { t, h, $, now } from "./dom.js";
import { R, person } from "./state.js";
import { toast, dropToast } from "./toasts.js";
import { audioOnlyOn, setAudioOnly } from "./controls.js";
import { rateText } from "./linkcheck.js";

var LABEL = { good: "room.quality.good", fair: "room.quality.fair", poor: "room.quality.poor", unknown: "room.quality.unknown" };
var POOR_FOR_MS = 5000, PROMPT_EVERY_MS = 60000;

export function qualityOf(p) {
  var q = p && p.quality;
  return q === "good" || q === "fair" || q === "poor" ? q : "unknown";
}

export function qualityText(q) { return t(LABEL[q] || LABEL.unknown); }

/** The bars element (three <i>), made once per tile. */
export function makeBars() {
  return h("span", { className: "qbars", "data-testid": "tile-quality", "data-quality": "unknown", role: "img" },
    h("i"), h("i"), h("i"));
}

export function setBars(el, q) {
  if (el.getAttribute("data-quality") !== q) { el.setAttribute("data-quality", q); }
  var label = qualityText(q);
  if (el.getAttribute("aria-label") !== label) { el.setAttribute("aria-label", label); el.title = label; }
}

function pct(x) {
  if (typeof x !== "number" || !isFinite(x)) { return t("room.unit.na"); }
  var v = x * 100;
  return (v > 0 && v < 1 ? v.toFixed(1) : String(Math.round(v))) + "%";
}
function num(x) { return typeof x === "number" && isFinite(x) ? x : null; }

/** The mediator's line of figures for one participant's link, or null when there are none. */
export function linkParts(link) {
  if (!link || typeof link !== "object") { return null; }
  var parts = [
    t("room.link.up", { kbps: rateText(num(link.kbps_up)), loss: pct(link.loss_up) }),
    t("room.link.down", { kbps: rateText(num(link.kbps_down)), loss: pct(link.loss_down) })
  ];
  if (num(link.rtt_ms) !== null) { parts.push(t("room.link.rtt", { ms: Math.round(link.rtt_ms) })); }
  if (num(link.budget_kbps) !== null) { parts.push(t("room.link.budget", { kbps: rateText(link.budget_kbps) })); }
  return parts;
}

// ------------------------------------------------------------------ my own link

var poorSince = null;
var lastPrompt = -Infinity;

/** Called with every room.state: my bars, and when my link turned poor. */
export function noteOwnQuality() {
  var me = R.me && person(R.me.id);
  var q = qualityOf(me);
  var bars = $("#self-tile [data-testid=self-quality]");
  if (bars) {
    setBars(bars, q);
    bars.hidden = !me || me.quality === undefined || R.screen !== "room";
  }
  if (q === "poor") { if (poorSince === null) { poorSince = now(); } } else { poorSince = null; }
  if (q === "good") { dropToast("quality-prompt"); }   // the advice no longer applies
  checkPrompt();
}

function checkPrompt() {
  if (poorSince === null || R.screen !== "room" || audioOnlyOn()) { return; }
  var at = now();
  if (at - poorSince < POOR_FOR_MS || at - lastPrompt < PROMPT_EVERY_MS) { return; }
  lastPrompt = at;
  R.qualityPrompts = (R.qualityPrompts || 0) + 1;
  // It stays for a minute (or until the link is good again, or audio only is on).
  toast(t("room.quality.prompt"), { kind: "warn", ms: PROMPT_EVERY_MS, key: "quality-prompt",
    action: { label: t("room.quality.switch"), run: function () { setAudioOnly(true); } } });
}

export function wireQuality() {
  // room.state is pushed on changes only: a link that stays poor needs the clock.
  setInterval(checkPrompt, 1000);
}
