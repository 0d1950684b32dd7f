"""The embedded SQLite store: schema, migrations and every query, synchronous.

Only the JobStore actor calls it, from one worker thread at a time.
"""
