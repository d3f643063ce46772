"""Running otpbridge without a person: schedules (systemd timers, cron), the pass git hook
and ``pass otpbridge`` extension, and the secret-free run log (docs/AUTOMATION.md).

May use: :mod:`otpbridge.core`. Used by the CLI and the API; it starts otpbridge runs as
child processes rather than importing the engine.
"""
