"""The drip engine: pure timing and step choice, and the set-based SQL planner.

``timing`` and ``planning`` are pure (no I/O, no clock); ``planner`` is the use case that
reads and writes the database; ``simulation`` replays a sequence for one subscriber.
"""
