"""The agent: Backend operations of a KernelBackend served over a stream, and its client.

``python3 -m harness.agent [--channel PATH] [--devices BDF,...] [--vm]`` runs it
(``harness/agent/__main__.py``); ``protocol.py`` is the wire format, shared with the
host side (``client.py``: ``AgentBackend``); ``server.py`` dispatches.  The ops are
the table in ``harness/backends/ops.py``.  docs/agent.md describes it all.

The agent's import path is kept to the standard library, ctypes and the kernel
backend: it runs inside a slow emulated guest where every import counts.  So this
file imports nothing, and the server never imports the client.
"""
