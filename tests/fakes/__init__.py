"""Fake model providers for tests: small Starlette apps that speak the providers' real wire formats,
served by uvicorn on 127.0.0.1 in a background thread (:class:`tests.fakes.harness.ThreadedServer`)."""
