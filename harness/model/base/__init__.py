"""drivers/base: the driver core's bus (bus.py) and binding (dd.py)."""
