"""Reservations made while the batch is being cancelled are undone, not leaked."""

from __future__ import annotations

import asyncio

import pytest

from activities.sending import _finish_even_if_cancelled


async def test_work_finishes_and_is_undone_when_cancelled_meanwhile() -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    undone: list[int] = []

    async def reserve() -> int:
        started.set()
        await finish.wait()
        return 7

    async def undo(granted: int) -> None:
        undone.append(granted)

    task = asyncio.create_task(_finish_even_if_cancelled(reserve(), undo=undo))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # the reservation is still being made: it is waited for
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert undone == [7]


async def test_work_that_finishes_is_kept() -> None:
    undone: list[int] = []

    async def reserve() -> int:
        return 3

    async def undo(granted: int) -> None:
        undone.append(granted)

    assert await _finish_even_if_cancelled(reserve(), undo=undo) == 3
    assert undone == []
