"""The virtual Feather Huzzah: sensornet's firmware on the real MicroPython VM with models of
the board's hardware (GPIO and LEDs, I2C with a TSL2561, Wi-Fi STA mode).

  board  VirtualBoard: one board (a micropython process), its world and what it did
  leds   decode LED blink codes from a GPIO timeline
  fleet  `sensornet sim`: N boards against a broker
"""
