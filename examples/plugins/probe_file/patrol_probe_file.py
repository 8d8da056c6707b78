"""A third-party probe: the item is ready while a file exists (an app that touches a marker)."""

import asyncio
import os

from patrol import Option, Probe, ProbeResult, Register, hookimpl


class FileProbe(Probe):
    name = "file"
    shorthand = "path"  # {"file": "ready.flag"} means {"file": {"path": "ready.flag"}}
    options = (Option("path", str, "", "the file; relative to the app's working directory"),)

    async def check(self) -> ProbeResult:
        base = getattr(self.target.config, "working_directory", "/")
        path = os.path.join(base, self.settings["path"])
        if await asyncio.to_thread(os.path.exists, path):  # a stat may hang (NFS): never on the loop
            return ProbeResult(True, f"{path} exists")
        return ProbeResult(False, f"{path} does not exist")


@hookimpl
def patrol_register_probes(register: Register[Probe]) -> None:
    register(FileProbe)
