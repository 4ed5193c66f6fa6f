"""The router's waits, slot requests and provider calls as values, run by a sync or an async driver.

The attempt loop (`ModelRouter._chain`) is one generator that yields what it needs done: `Sleep` (a
limiter slot or a provider-asked wait), `Pick` (ask the pool's limiters for a slot: DynamoDB writes) and
`Call` (one HTTP attempt). The sync driver runs them in place; the async driver awaits `asyncio.sleep`,
runs limiter writes in a worker thread and awaits the client's `ainvoke`/`astream`, so the event loop
never blocks. Both stream a `Call`'s chunks to the caller when asked, and send the merged message back
into the loop, which then accounts for it exactly as for a plain call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sleep:
    seconds: float


@dataclass
class Pick:
    run: Callable[[], Any]  # the pool pick (limiter writes); its result is sent back


@dataclass
class Call:
    llm: Any
    input: Any
    config: Any
    kwargs: dict[str, Any]
    stream: bool = False  # stream the chunks to the caller
    delivered: bool = field(default=False)  # set once a chunk reached the caller: no retry after that


Op = Sleep | Pick | Call
Loop = Generator[Op, Any, Any]


def _merge(chunks: list[Any]) -> Any:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


def run_sync(loop: Loop, sleep: Callable[[float], None]) -> Iterator[Any]:
    """Run `loop`; yields the chunks of streamed calls; the loop's return value is this generator's."""
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            op = loop.throw(throw) if throw is not None else loop.send(send)
        except StopIteration as stop:
            return stop.value
        send, throw = None, None
        try:
            if isinstance(op, Sleep):
                sleep(op.seconds)
            elif isinstance(op, Pick):
                send = op.run()
            elif not op.stream:
                send = op.llm.invoke(op.input, op.config, **op.kwargs)
            else:
                chunks = []
                for chunk in op.llm.stream(op.input, op.config, **op.kwargs):
                    chunks.append(chunk)
                    op.delivered = True
                    yield chunk
                send = _merge(chunks) if chunks else None
        except GeneratorExit:
            loop.close()  # the caller stopped reading: release the slot, keep the records
            raise
        except Exception as exc:
            throw = exc


def _for_loop(llm: Any) -> Any:
    rebind = getattr(llm, "for_running_loop", None)
    return rebind() if rebind is not None else llm


@dataclass
class Outcome:
    value: Any = None


async def run_async(loop: Loop, sleep: Callable[[float], Any], outcome: Outcome) -> AsyncIterator[Any]:
    """`run_sync` for the event loop; the loop's return value lands in `outcome.value`."""
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            op = loop.throw(throw) if throw is not None else loop.send(send)
        except StopIteration as stop:
            outcome.value = stop.value
            return
        send, throw = None, None
        try:
            if isinstance(op, Sleep):
                await sleep(op.seconds)
            elif isinstance(op, Pick):
                send = await asyncio.to_thread(op.run)
            elif not op.stream:
                send = await _for_loop(op.llm).ainvoke(op.input, op.config, **op.kwargs)
            else:
                chunks = []
                async for chunk in _for_loop(op.llm).astream(op.input, op.config, **op.kwargs):
                    chunks.append(chunk)
                    op.delivered = True
                    yield chunk
                send = _merge(chunks) if chunks else None
        except GeneratorExit:
            loop.close()
            raise
        except Exception as exc:
            throw = exc
