"""Users, roles, jurisdictions, sessions, API keys and multi-factor login."""
