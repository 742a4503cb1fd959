"""The audit trail as a domain: listing, filtering and exporting entries."""
