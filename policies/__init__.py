"""The CrossGuard policy pack: cost and security guardrails for every stack of this project."""
