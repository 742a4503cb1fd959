"""The kernel: storage, events, the bus, errors, the audit trail, geometry. Imports no domain."""
