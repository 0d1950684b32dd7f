"""The HTTP API: quart-trio under hypercorn.

Each feature module owns its routes and schemas; :mod:`~chamberlain.web.routes`
assembles them.  Handlers ask the actors through the gateway and never touch the
store.
"""
