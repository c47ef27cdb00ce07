"""The subscriber's attention: one marketing cap across every sequence and campaign,
priorities between the emails that compete for a slot, and the subscriber's own choices
(topics, frequency) from the preference centre.

``cap`` and ``priority`` and ``decide`` are pure; ``policy`` builds what they need from the
app; ``claims`` applies them at claim time in the ledger (where every send is decided).
"""
