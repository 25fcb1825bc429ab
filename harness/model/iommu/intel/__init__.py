"""drivers/iommu/intel: the Intel VT-d driver."""
