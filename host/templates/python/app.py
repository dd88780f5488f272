"""Build entry for componentize-py: adapts plugin.handle to the WIT export.

You should not need to edit this file. componentize-py runs it once at build
time (imports included) and snapshots the interpreter; the sandbox has no
files, so every module the plugin uses must be imported at the top level of
a module, here or in plugin.py, never first inside handle.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

import _strptime  # noqa: F401  datetime.strptime imports it lazily, too late for the sandbox
import plugin
from wasmhook import _glue

# Checked at build time, so a plugin.py without its function fails the build
# rather than every event.
_glue.check_handler(plugin)


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> types.Outcome:
        return _glue.handle(plugin.handle, event, types=types, host=host, err=Err)
