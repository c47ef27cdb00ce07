"""SendGrid event webhook: signature check, parsing, storing once, acting, reconciling.

``signature`` is the only module that imports ``sendgrid``; ``parsing`` is pure;
``store`` owns the transaction that stores a batch and acts on it.
"""
