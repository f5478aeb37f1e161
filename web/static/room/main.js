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
 *   end.js      leaving, removal, the end, rejoining     linkcheck.js the check-in's link check
 *   quality.js  link quality bars, the poor-link advice  uplink.js   camera off when my uplink
 *                                                                     cannot carry video */
/*   transcript.js the e-transcript tab     lobbytools.js lobby messages, waits, back to the lobby
 *   hands.js    raised hands              floor.js    mute all, held, the active speaker
 *   caucustools.js caucus timers, broadcast, knock
 *   evidence.js evidence on screen, adding evidence live
 *   share.js    sharing my screen, a shared screen shown large */
import { CFG, STORE_KEY } from "./config.js";
import { $ } from "./dom.js";
import { R } from "./state.js";
import { setConn } from "./toasts.js";
import { setScreen, wireSide } from "./screen.js";
import { openDevices, updateToggles, wireDevices, setOn } from "./devices.js";
import { enter, wantJoined } from "./signal.js";
import { wireSteps } from "./steps.js";
import { wireGrid } from "./grid.js";
import { wireChat } from "./chat.js";
import { wireHelp } from "./help.js";
import { wireControls, wantAudioOnly } from "./controls.js";
import { checkLink, wireLinkCheck } from "./linkcheck.js";
import { wireQuality } from "./quality.js";
import { wireUplink } from "./uplink.js";
import { wireExperts } from "./experts.js";
import { wireRecording } from "./recording.js";
import { wireEndSession, wireLeave } from "./end.js";
import { wireTranscript } from "./transcript.js";
import { wireLobbyTools } from "./lobbytools.js";
import { wireHands } from "./hands.js";
import { wireFloor } from "./floor.js";
import { wireCaucusTools } from "./caucustools.js";
import { wireEvidence } from "./evidence.js";
import { wireShare } from "./share.js";

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
  wireQuality();
  wireUplink();
  wireTranscript();
  wireLobbyTools();
  wireHands();
  wireFloor();
  wireCaucusTools();
  wireEvidence();
  wireShare();
  // Enter with audio only (offered when the link check finds video may not work): no video
  // received, and my camera stays off until I turn it on.
  wireLinkCheck(function () { wantAudioOnly(true); setOn("video", false, { local: true }); enter(); });

  $("#enter-btn").addEventListener("click", function () { enter(); });
  updateToggles();
  setScreen("precheck");
  var autoEnter = false;
  try { autoEnter = sessionStorage.getItem(STORE_KEY) === "1"; } catch (e) { /* ignore */ }
  // The link check runs once the camera has started (which keeps a phone busy for a moment), or
  // after 3 s if the permission question is still open; not when going straight back in.
  var checked = false;
  var check = function () { if (!checked && !autoEnter && R.screen === "precheck") { checked = true; checkLink(); } };
  setTimeout(check, 3000);
  openDevices().then(function () {
    // Back after a reload or a crash of the tab: straight in, no second check-in.
    if (autoEnter && !wantJoined) { enter(); return; }
    check();
  });
}

if (CFG) { start(); }
