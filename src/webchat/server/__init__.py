"""The ASGI application: app factory and routers (no SQL and no engine code here)."""
