"""The in-guest agent: serves Backend operations of a local KernelBackend over a stream.

``python3 -m harness.agent [--channel PATH] [--devices BDF,...] [--vm]`` runs it
(``harness/agent/__main__.py``); ``protocol.py`` is the wire format, shared with the
host side (``harness.backends.agent.AgentBackend``); ``server.py`` dispatches.
docs/agent.md describes all three.

This package's import path is kept to the standard library, ctypes and the
kernel backend: it runs inside a slow emulated guest where every import counts.
"""
