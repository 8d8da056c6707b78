"""The transport-neutral API: requests in, answers out, the same for every transport.

Owns the one request handler (:mod:`patrol.api.handler`), the wire format in one place
(:mod:`patrol.api.wire`: fields, limits, encodings), who may see an item's private
parts (:mod:`patrol.api.visibility`), the access rules every transport applies
(:mod:`patrol.api.access`) and the OpenAPI document built from the same tables. It may
import the engine, the configuration, the plugin contract and :mod:`patrol.util`;
never the web stack or the command line. Nothing is imported here.
"""
