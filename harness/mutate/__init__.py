"""Mutation testing of the kernel's uAPI handlers (`vfio-conformance mutate`, docs/mutate.md)."""
