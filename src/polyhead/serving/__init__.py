"""Serving predictions over HTTP (the ``serve`` extra: FastAPI and uvicorn)."""
