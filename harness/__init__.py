"""vfio-conformance: conformance and differential fuzz testing of the Linux VFIO and iommufd uAPIs."""

__version__ = "0.1.0"
