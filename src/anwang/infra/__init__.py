"""Adapters from anwang's ports to outside infrastructure (NATS JetStream)."""
