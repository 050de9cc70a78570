"""Development tooling: ``funnel dev``, ``seed``, ``import``, the embedded servers and the
platform helpers that tests, ``make bench`` and ``make boards-preview`` share. Never in
a service image."""
