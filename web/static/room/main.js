/* The live mediation room's entry point (room.html loads it as a module, after socket.io and
 * agreement-panel.js): device check, lobby, two peer connections (publish / subscribe), the
 * grid, chat, the mediator's controls, and reconnecting. Protocol: docs/protocol.md
 * (CONTRACT.md): socket.io on /socket.io/, every client event acknowledged {ok, ...}.
 * All text comes from the page's JSON blob (room.* translations).
 *
 * The modules only declare on import; this file wires them up, in the order the page has
 * always done it, then opens the devices (and goes straight back in after a reload).
 *   config.js   the page's JSON blob and fixed numbers    dom.js      t(), $(), h() ...
 *   state.js    window.mediationRoom and state queries    toasts.js   toasts, banner, conn
 *   screen.js   screens, side panel, controls shown       devices.js  my camera and mic
 *   signal.js   socket.io, join, rejoin, event routing    steps.js    consent/notice/identity
 *   peers.js    publish/subscribe peer connections        grid.js     the tiles
 *   render.js   a room.state applied to the page          chat.js     chat
 *   help.js     help requests                             controls.js the mediator's panel
 *   experts.js  inviting an expert                        recording.js recording consent
 *   end.js      leaving, removal, the end, rejoining */
import { CFG, STORE_KEY } from "./config.js";
import { $ } from "./dom.js";
import { R } from "./state.js";
import { setConn } from "./toasts.js";
import { setScreen, wireSide } from "./screen.js";
import { openDevices, updateToggles, wireDevices } from "./devices.js";
import { enter, wantJoined } from "./signal.js";
import { wireSteps } from "./steps.js";
import { wireGrid } from "./grid.js";
import { wireChat } from "./chat.js";
import { wireHelp } from "./help.js";
import { wireControls } from "./controls.js";
import { wireExperts } from "./experts.js";
import { wireRecording } from "./recording.js";
import { wireEndSession, wireLeave } from "./end.js";

function start() {
  window.mediationRoom = R;
  setConn("idle");
  wireDevices();
  wireSteps();
  wireGrid();
  wireSide();
  wireChat();
  wireHelp();
  wireControls();
  wireExperts();
  wireEndSession();
  wireRecording();
  wireLeave();

  $("#enter-btn").addEventListener("click", function () { enter(); });
  updateToggles();
  setScreen("precheck");
  var autoEnter = false;
  try { autoEnter = sessionStorage.getItem(STORE_KEY) === "1"; } catch (e) { /* ignore */ }
  openDevices().then(function () {
    // Back after a reload or a crash of the tab: straight in, no second check-in.
    if (autoEnter && !wantJoined) { enter(); }
  });
}

if (CFG) { start(); }
