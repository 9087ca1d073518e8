# Virtual Feather Huzzah: measure what the models take of the heap (they are C or frozen on a
# real board, so the host adds this figure to the heap it gives the firmware). Prints
# "models <bytes> umqtt <bytes>": what stays allocated after loading and exercising them.
import gc

gc.collect()
a0 = gc.mem_alloc()
import machine
import network

p = machine.Pin(0, machine.Pin.OUT, value=1)
p(0)
p(1)
bus = machine.I2C(scl=machine.Pin(5), sda=machine.Pin(4))
a = None
for a in bus.scan():
    bus.readfrom_mem(a, 0x8C, 4)
w = network.WLAN(network.STA_IF)
w.status()
w.config("mac")
del p, bus, w, a
gc.collect()
a1 = gc.mem_alloc()
try:
    import umqtt.simple
except ImportError:
    pass
gc.collect()
a2 = gc.mem_alloc()
print("models", a1 - a0, "umqtt", a2 - a1)
