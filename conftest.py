"""The pytest plugin: installed, the pytest11 entry point loads it (registering it here too
would fail, "Plugin already registered"); in a checkout never installed, this does."""

import os
from importlib.metadata import entry_points

_installed = any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11"))
if not _installed or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
    pytest_plugins = ["harness.pytest_plugin"]
