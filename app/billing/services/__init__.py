"""Billing use cases (rules, no commits). Entry points that commit live in `app.billing.jobs` and
`app.billing.flows`."""
