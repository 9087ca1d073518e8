# main.py: runs after boot.py. The application is in app.py: asyncio tasks for the status LED,
# Wi-Fi, the sensors and MQTT. In safe mode (safemode.py: boot.py decided) it does not start and
# the REPL is free.
import sys

import safemode

_safe = safemode.active()
del safemode, sys.modules["safemode"]  # not needed again before app.py's stable()
if not _safe:
    import app

    app.main()
