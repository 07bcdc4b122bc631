"""`LoopTask`: a coroutine of the server's, run as one task on its event loop from `start` to
`stop` (the loop-lag probe, the memory trim).

>>> import asyncio
>>> class Ticks(LoopTask):
...     name = "ticks"
...     def __init__(self) -> None:
...         super().__init__()
...         self.ticks = 0
...     async def _run(self) -> None:
...         while True:
...             self.ticks += 1
...             await asyncio.sleep(0.01)
>>> async def a_while(task: Ticks) -> None:
...     task.start()
...     await asyncio.sleep(0.05)
...     await task.stop()
>>> ticks = Ticks()
>>> asyncio.run(a_while(ticks))
>>> ticks.ticks > 0
True
"""

from __future__ import annotations

import asyncio
import contextlib


class LoopTask:
    """Subclasses give ``name`` and `_run`; `_wanted` False keeps `start` from starting it."""

    name = "loop-task"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def _wanted(self) -> bool:
        return True

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start on the running loop (call from inside it); once, however often called."""
        if self._task is None and self._wanted():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
