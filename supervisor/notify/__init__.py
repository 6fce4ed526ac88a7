"""Notifications: tell the person what ftmon found and did (webhooks, commands, the desktop)."""
