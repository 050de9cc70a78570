"""Shared Funnel common machinery.

Everything that crosses service lines lives here: the event envelope and catalogue,
the transactional outbox, the idempotent inbox consumer, the database pool and
migrations runner, settings, logging and telemetry, and the embedded servers used by
`funnel dev` and the tests.
"""
