"""Campaigns: one-off sends of one content item to a segment.

Modules: ``drafts`` (create, edit, delete), ``sending`` (schedule, send now, test sends),
``steering`` (pause, resume, cancel), ``rules`` (checks they share), ``schedule`` (pure
time and segment rules), ``audience`` (the segment in SQL), ``planner`` (freezing the
audience into the ledger), ``views`` (what the CLI shows).

States::

    draft --schedule--> scheduled --planner--> sending --planner--> sent
      |  <--(re)schedule--'   |  \\--planner (too late)--> stale --resume--> sending
      |                       |       sending <--resume-- paused <--pause--'
      '--send (now)-----------+--> sending          any unfinished state --cancel--> cancelled

Decisions:

- Only ``draft`` and ``scheduled`` campaigns (audience not frozen yet) can be edited,
  rescheduled or deleted; once a campaign has started its ledger rows are its history.
- ``pause`` works on ``scheduled`` and ``sending`` campaigns; ``resume`` brings a paused
  campaign back (``sending`` if it had started, else ``scheduled``) and starts a ``stale``
  one now (its rows are due at once, so the late start is the marketer's explicit choice).
- ``cancel`` marks every still-queued row ``skipped`` right away (rows already leased or
  being handed to the provider finish); what was sent stays recorded.
- ``send`` starts the campaign at once and freezes its audience; the ``deliver`` job (from
  ``serve``, ``worker`` or ``tick``) sends the rows, like any other delivery.
- Test sends are ledger rows of kind ``test`` addressed to ``to_email``, rendered for a
  sample subscriber, with no ``campaign_id`` (so they never count in campaign numbers and
  are sent even while the campaign is paused); each run gets fresh keys, so a test can be
  repeated.
- Drips during a campaign: a subscriber due a drip step the same day gets both, unless the
  campaign was created with ``--pause-drips``; then the drip planner
  (``newsletter/drip/planner.py``) holds that subscriber's step while the campaign email is
  due around the same day.
- Transactional items (``system/confirmation``) cannot be campaigns: they carry no
  unsubscribe footer.
"""
