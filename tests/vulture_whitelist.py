"""Names the dead-code check (vulture, ``[tool.vulture]`` in pyproject.toml) takes as used.

Vulture reads this file as one of its paths; nothing imports it.  ``_`` stands for any object:
``_.masked`` marks the attribute ``masked`` used wherever it is set.  Names called by a framework
or by a string are ignored by pattern in pyproject.toml, not listed here.
"""

# ruff: noqa: B018

_ = object()

# State the reference model keeps because the kernel's struct has it: written where the kernel
# writes it, read by no rule the model has yet.  Drop a name here once a rule reads it.
_.commit                                  # Gate.commit, the fixing commit a gate may name (harness/model/gates.py)
_.nested_parent                           # harness/model/iommu/intel/iommu.py
_.msi_cookie                              # harness/model/iommufd/hw_pagetable.py
_.pasid_compat                            # harness/model/iommufd/hw_pagetable.py
_.queue_type                              # harness/model/iommufd/viommu.py
_.base_addr                               # harness/model/iommufd/viommu.py
_.BUS_NOTIFY_BIND_DRIVER                  # harness/model/base/bus.py
_.err_trigger                             # harness/model/vfio/pci_core.py
_.req_trigger                             # harness/model/vfio/pci_core.py
_.group_id                                # harness/model/vfio/pci_core.py
_.masked                                  # harness/model/vfio/pci_intrs.py
_.nvec                                    # vfio_msi_enable's, as the kernel's (harness/model/vfio/pci_intrs.py)
