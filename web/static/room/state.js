/* R, the object the page publishes as window.mediationRoom (tests and the benchmarks read it:
 * the last room.state, who I am, both peer connections, the join timings, the screen, errors),
 * and the questions every concern asks of the room's state: where am I, who is that, may I
 * manage, who waits in the lobby, what is an area called. A leaf (besides dom.js). */
import { t } from "./dom.js";

// What tests and the benchmark read. main.js puts it on window.
export var R = {
  state: null, me: null, pubPc: null, subPc: null, joinedAt: null, firstFrameAt: null,
  joinSentAt: null, admittedAt: null, inLobby: false, screen: "precheck", joins: 0, errors: []
};

export function myWhere() {
  if (!R.state || !R.me) { return null; }
  var me = R.state.participants.find(function (p) { return p.id === R.me.id; });
  return me ? me.where : null;
}

export function grants() { return (R.me && R.me.grants) || []; }
export function canManage() { var g = grants(); return g.indexOf("admit") >= 0 || g.indexOf("move") >= 0 || g.indexOf("end") >= 0; }

export function lobbyPeople() {
  return R.state && canManage() ? R.state.participants.filter(function (p) { return p.where === "lobby"; }) : [];
}
export function person(pid) { return R.state && R.state.participants.find(function (p) { return p.id === pid; }); }

export function areaName(area) {
  if (area === "main") { return t("room.where.main"); }
  if (area === "lobby") { return t("room.where.lobby"); }
  var c = R.state && (R.state.caucuses || []).find(function (x) { return x.id === area; });
  return c ? c.name : t("room.where.caucus");
}
