"""Events, routes and pipelines in plain synchronous code.

:mod:`~chamberlain.routing.planner` decides what a succeeded job sets in motion
and checks the configuration at start-up; :mod:`~chamberlain.routing.templates`
holds the path syntax and ``with:`` templates it uses, and
:mod:`~chamberlain.routing.conditions` evaluates ``if:`` conditions.
"""
