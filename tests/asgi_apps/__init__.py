"""Small ASGI applications the ASGI integration tests serve with ``h2stream serve --app``."""
