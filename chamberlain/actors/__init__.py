"""The actors: long-lived trio tasks that own one concern each.

They talk only through bounded memory channels (:mod:`~chamberlain.actors.mail`
holds every message, :mod:`~chamberlain.actors.mailbox` the request/reply
mechanics) and know no HTTP; the web layer reaches them through the
:class:`~chamberlain.actors.gateway.Gateway`.  Their decisions live in the domain
packages below them, so each actor stays a thin loop of mail in, decision, mail out.
"""
