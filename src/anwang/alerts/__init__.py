"""Alerts: watch-list hits turned into something a person acknowledges, verifies and
closes — deduplicated, escalated when nobody answers, and pushed live."""
