"""Form sources: form services and shops posting to ``POST /subscribe/{source}``.

Pure core (``config``, ``safe_json``, ``verify``, ``fields``, ``presets``, ``decide``): no I/O,
no clock, no environment. ``loading`` reads the file and the secrets; ``intake`` is the use
case that hands an accepted delivery to ``newsletter.subscriptions.subscribe``.
"""
