"""Running as a boot-time appliance: systemd notify protocol, watchdog heartbeat, graceful stop."""
