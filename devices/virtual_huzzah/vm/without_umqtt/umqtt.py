# Virtual Feather Huzzah: a firmware build without umqtt (the 1 MB ESP8266 build freezes none).
# VirtualBoard(umqtt=False) puts this directory ahead of the frozen modules, so `import
# umqtt.simple` fails as it does on such a board.
raise ImportError("no module named 'umqtt'")
