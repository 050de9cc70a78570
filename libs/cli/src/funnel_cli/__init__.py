"""The ``funnel`` command."""
