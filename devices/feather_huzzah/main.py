# main.py: runs after boot.py. The application is in app.py: asyncio tasks for the status LED,
# Wi-Fi, the sensors and MQTT.
import app

app.main()
