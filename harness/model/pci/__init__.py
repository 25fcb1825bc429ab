"""drivers/pci: the PCI core (pci.py), drivers and matching (pci_driver.py), SR-IOV
(iov.py), the sysfs files (pci_sysfs.py), and the enumeration at boot (probe.py)."""
