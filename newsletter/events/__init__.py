"""SendGrid event webhook: signature check, parsing, storing once, acting, reconciling.

``signature`` is the only module that imports ``sendgrid``; ``parsing`` and ``policy`` are
pure; ``store`` owns the transaction that stores a batch and acts on it, with
``suppression`` (the set-based act step) and ``postgres`` (PostgreSQL's batch statements);
``inbox`` keeps each verified webhook body until a drain applies it through ``store``.
"""
