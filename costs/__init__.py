"""Cost tracking on the domain layer: estimates, AWS price refresh, billed actuals, reports.

- ``estimate`` / ``preview``: a stack's hourly cost, from its stack file or from a preview;
- ``refresh``: a dated price table from the AWS Pricing API and EC2 spot history;
- ``actuals`` / ``reconcile``: billed spend from Cost Explorer, set against the estimate;
- ``runs`` / ``report``: run directories read through one adapter, and the report across runs;
- ``aws``: boto3 clients (imported lazily) and one-line errors; ``cli``: the typer sub-apps.
"""
