"""The opening-bell daemon: every account's order into the broker at the open, from data prepared before it."""

__version__ = "0.1.0"
