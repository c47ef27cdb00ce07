"""Sequence triggers and exits: who joins or leaves a sequence when a tag is added, an event
arrives, or an operator says so (``enroll:`` / ``exit:`` / ``reenroll:`` in the file)."""
