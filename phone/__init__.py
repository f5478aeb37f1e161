"""Join by telephone: a SIP endpoint (UAS) that takes calls from a PBX or trunk, a keypad IVR,
and a bridge that puts the caller into the live room as an audio participant
(docs/protocol.md, "Telephone (SIP)"). Imports nothing of ours: the composition (server/http/app.py)
hands it the dial-in check and the node's URL."""
