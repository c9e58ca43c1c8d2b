"""Deterministic workflow code: the campaign workflow and its pure calendar/gate logic.

Nothing here imports sqlalchemy, redis, httpx or aiosmtplib: all I/O is in ``activities``.
"""
