/* The page's configuration: the JSON blob #room-config the server renders into room.html (the
 * join token, language, name, role, every room.* text), and the client's fixed numbers.
 * A leaf module: everything else reads it, it reads nothing. The page loads the room's
 * script only when the blob is there (a live join link); CFG is null otherwise. */

var cfgEl = document.getElementById("room-config");
export var CFG = cfgEl ? JSON.parse(cfgEl.textContent) : null;
export var S = (CFG && CFG.strings) || {};
export var VIDEO_MAX_BITRATE = 600000;   // REMB from viewers does not reach us through the SFU: cap it here
export var AUDIO_MAX_BITRATE = 48000;
// The camera's second, small encoding (a quarter of the width and height) that the
// server forwards to viewers whose link is too narrow for the camera's own stream.
export var SMALL_VIDEO_BITRATE = 60000;
// A shared screen (docs/protocol.md, "Screen sharing"): text must stay readable.
export var SCREEN_MAX_BITRATE = 1200000;
export var ACK_MS = 10000;
export var STORE_KEY = CFG ? "mediation-room-entered:" + CFG.token.slice(-24) : null;
// The secret binding this link to this device (docs/protocol.md, "One device per link"): kept
// in localStorage, so a reload, a new tab or a browser restart on this device carries on.
export var RESUME_KEY = CFG ? "mediation-room-device:" + CFG.token.slice(-24) : null;
export var canPublishRole = !!CFG && CFG.role !== "observer";
