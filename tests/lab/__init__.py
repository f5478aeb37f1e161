"""The network lab itself (tests/support/netlab.py): its links do what they are set to."""
