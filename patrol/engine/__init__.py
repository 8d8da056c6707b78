"""The supervision engine: one asyncio loop that owns every app's and service's state.

Owns the supervisor and its runners (an app's policy, one instance's processes and its
stop; a service's commands), process spawning and the one reaper, the proof of which
process is whose, the one reader of ``/proc`` and the one CPU sampler, signals, the
items' state and the state file, the apps' log pipes and files. It may import the
plugin contract (:mod:`patrol.plugin`), the configuration (:mod:`patrol.config`) and
:mod:`patrol.util`; never the API, the web stack or the command line, which are built
on top of it (``patrol/daemon.py`` wires them together).
"""
