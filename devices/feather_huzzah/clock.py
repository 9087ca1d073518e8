# The clock: set from an NTP server with ntptime (frozen in the ESP8266 firmware). app.py loads
# this module only for the call and drops it after.
import sys


def sync(host):
    """Set the RTC (UTC) from `host` (str): one SNTP exchange that blocks the loop for at most
    ntptime.timeout (1 s). True when set; False (the reason printed) when not."""
    try:
        import ntptime

        ntptime.host = host
        ntptime.settime()
        print(f"app: clock set from {host}")
        return True
    except Exception as e:  # OSError: unreachable, no answer; ImportError: a build without it
        print(f"app: ntp {host}: {e!r}")
        return False
    finally:
        sys.modules.pop("ntptime", None)
