"""Names the dead-code check (vulture, ``[tool.vulture]`` in pyproject.toml) takes as used.

Vulture reads this file as one of its paths; nothing imports it.  ``_`` stands for any object:
``_.masked`` marks the attribute ``masked`` used wherever it is set.  Names called by a framework
or by a string are ignored by pattern in pyproject.toml, not listed here.
"""

# ruff: noqa: B018

_ = object()

# TODO(issue 11): model layout.  Dead state and functions of the reference model, kept until
# its files are reorganised; remove each then (or give it its reader) and drop it from here.
_.commit                                  # Gate.commit, never set (harness/model/gates.py)
_.nested_parent                           # harness/model/iommufd/domain.py
_.msi_cookie                              # harness/model/iommufd/hw_pagetable.py
_.pasid_compat                            # harness/model/iommufd/hw_pagetable.py
_.areas_in                                # harness/model/iommufd/io_pagetable.py
_.is_pinned                               # harness/model/iommufd/pages.py
_.queue_type                              # harness/model/iommufd/viommu.py
_.base_addr                               # harness/model/iommufd/viommu.py
_.close_all                               # ModelKernel.close_all (harness/model/kernel.py)
_.BUS_NOTIFY_BIND_DRIVER                  # harness/model/pci.py
_.vfio_iommufd_device_has_compat_ioas     # harness/model/vfio/iommufd.py
_.PCI_BASE_CLASS_DISPLAY_VGA              # harness/model/vfio/pci_core.py
_.err_trigger                             # harness/model/vfio/pci_core.py
_.req_trigger                             # harness/model/vfio/pci_core.py
_.group_id                                # harness/model/vfio/pci_core.py
_.masked                                  # harness/model/vfio/pci_intrs.py
_.nvec                                    # vfio_msi_enable's argument (harness/model/vfio/pci_intrs.py)
_.vfio_device_set_open_count              # harness/model/vfio/vfio_main.py
