"""Notifications to parties, experts and staff over SMS and e-mail, through the outbox."""
