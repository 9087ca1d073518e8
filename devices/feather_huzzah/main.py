# main.py: runs after boot.py. The application is in app.py: asyncio tasks for the status LED,
# Wi-Fi, the sensors and MQTT. In safe mode (safemode.py, decided by boot.py) it does not start,
# and the REPL is free.
try:
    from safemode import active as _safe
except ImportError:  # safemode.py missing: start the application all the same
    _safe = False

if not _safe:
    import app

    app.main()
