"""The socket.io signaling layer: validates every event and drives rooms/ and the session service."""
