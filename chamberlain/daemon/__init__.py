"""The composition root: the one package that knows every layer.

:class:`~chamberlain.daemon.tree.Daemon` builds the actor tree and its listeners
and owns signals and shutdown; beside it are what only a whole daemon needs: the
single-instance lock, sd_notify and JSON logging.
"""
