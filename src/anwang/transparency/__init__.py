"""The public transparency report: what anwang holds and how it was used, computed from
the data and the audit trail at the moment it is asked for, never typed in."""
