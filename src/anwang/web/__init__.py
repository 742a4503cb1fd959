"""Pages (Jinja2 + htmx), static assets, the live SSE stream, and the HTTP edge."""
