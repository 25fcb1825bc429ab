"""Locating the Linux source the uAPI declarations are checked against."""
