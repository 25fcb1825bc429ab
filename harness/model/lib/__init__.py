"""lib/: the kernel library helpers the model's sysfs files parse with."""
