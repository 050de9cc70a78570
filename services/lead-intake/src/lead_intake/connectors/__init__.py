"""Native inbound connectors: HubSpot, Salesforce and Stripe deliveries, verified the way
each vendor documents and mapped onto our own deal and account webhooks.

Everything here is pure: functions of the request's bytes and headers, the settings and
the current time. The HTTP routes (``POST /v1/connectors/{vendor}``) live elsewhere and
map :mod:`.errors` to answers in one place.
"""
