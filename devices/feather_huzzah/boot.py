# boot.py: runs first at every reset. Unless in safe mode (safemode.py), brings Wi-Fi up in STA
# mode (the AP interface off) from config.json and waits for it at most wifi_timeout_s. main.py
# then starts the application, which shows a missing config or a failed connection on the LED
# and keeps retrying.
import gc


def _boot():
    try:
        import safemode

        if safemode.check():
            return
        import settings
        import wifi

        cfg = settings.load()
        wifi.start(cfg["wifi_ssid"], cfg["wifi_password"])
        status = wifi.wait(int(cfg["wifi_timeout_s"] * 1000))
        print("boot: wifi status", status, "connected" if wifi.sta().isconnected() else "not connected")
    except Exception as e:  # config errors, missing modules: main.py reports them on the LED
        print("boot:", repr(e))


_boot()
del _boot
gc.collect()
