"""The HTTP transport: the JSON API over HTTP, the status page, and the web GUI.

Owns the server (uvicorn inside Patrol's loop, with connections Patrol accepts and times
itself), the routes of the original API, the gate in front of every route (the token,
sessions, rate limits, DNS rebinding), and the GUI with its templates and static files.
It may import the API, the engine, the configuration, the plugin contract and
:mod:`patrol.util`; nothing below imports it. The kernel registers it as its built-in
transport plugin ``patrol.http`` (see :data:`patrol.plugin.loader.DEFAULT_PLUGINS`).
"""
