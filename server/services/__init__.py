"""Domain services: every rule about cases, people and sessions. Handlers only translate."""
