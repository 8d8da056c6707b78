"""Small helpers that know nothing about Patrol's concepts, shared by every layer.

Go time layouts, overflow-free backoff, the one comparison of secrets, bounded log
lines, work in steps that give the event loop a turn. A leaf: modules here import only
the standard library (and structlog), never another part of Patrol.
"""
