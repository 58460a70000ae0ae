"""The ephemeral load-test stack: its typed spec, sizing, Pulumi program and pod manifests."""
