"""drivers/iommu: the iommu core (iommu.py) and the Intel driver (intel/iommu.py)."""
