# boot.py: runs first at every reset. Counts the boot for safe mode (safemode.py) and, unless in
# safe mode, brings Wi-Fi up in STA mode (the AP interface off) from config.json and waits for it
# at most wifi_timeout_s. main.py then starts the application (unless in safe mode), which shows
# a missing config or a failed connection on the LED and keeps retrying.
import gc
import sys


def _boot():
    try:
        import safemode

        safe = safemode.check()
        del sys.modules["safemode"]  # main.py and app.py load it again for a moment
        if safe:
            return
        import settings
        import wifi

        cfg = settings.load()
        del sys.modules["settings"]  # app.py loads it again when it reads config.json
        wifi.start(cfg["wifi_ssid"], cfg["wifi_password"])
        status = wifi.wait(int(cfg["wifi_timeout_s"] * 1000))
        print("boot: wifi status", status, "connected" if wifi.sta().isconnected() else "not connected")
    except Exception as e:  # config errors, missing modules: main.py reports them on the LED
        print("boot:", repr(e))


_boot()
del _boot
gc.collect()
