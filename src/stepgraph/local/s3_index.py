"""A sorted key index for moto's S3, so a prefix listing reads only the keys under that prefix.

moto 5 answers every `ListObjectsV2` by copying and scanning the whole bucket. The checkpointer lists
its thread's prefix on every `get_tuple` and usage objects pile up beside it, so a local run slows as
the bucket fills (provider requests per second fell from 37 to 16 over a 2,000-item run). With the
index a listing costs a bisection plus the keys it returns; moto's own code still builds the answer
(delimiters, markers, pages, delete markers), from the matching keys only.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

_lock = threading.RLock()
_INDEX = "_stepgraph_sorted_names"
# Each patching gets a new number: an index built under an earlier one may have missed writes since.
_session = [0]


def _current(store: Any) -> list[str] | None:
    entry = store.__dict__.get(_INDEX)
    return entry[1] if entry is not None and entry[0] == _session[0] else None


def _index(store: Any) -> list[str]:
    names = _current(store)
    if names is None:
        names = sorted(dict.keys(store))
        store.__dict__[_INDEX] = (_session[0], names)
    return names


def _added(store: Any, key: str) -> None:
    names = _current(store)
    if names is not None:
        i = bisect.bisect_left(names, key)
        if i == len(names) or names[i] != key:
            names.insert(i, key)


def _removed(store: Any, key: str) -> None:
    names = _current(store)
    if names is not None:
        i = bisect.bisect_left(names, key)
        if i < len(names) and names[i] == key:
            del names[i]


class _PrefixView:
    """What moto's `list_objects` reads of `bucket.keys`: `items()`, limited to one prefix."""

    def __init__(self, store: Any, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def items(self) -> Iterator[tuple[str, Any]]:
        with _lock:
            names = _index(self.store)
            start = bisect.bisect_left(names, self.prefix)
            matched = []
            for name in names[start:]:
                if not name.startswith(self.prefix):
                    break
                matched.append(name)
        for name in matched:
            versions = dict.get(self.store, name)
            if versions:
                yield name, versions[-1]


class _BucketView:
    def __init__(self, keys: _PrefixView) -> None:
        self.keys = keys


@contextmanager
def prefix_index() -> Iterator[None]:
    """Patch moto's S3 (in this process, also behind a moto server) for indexed prefix listings."""
    from moto.s3.models import S3Backend
    from moto.s3.utils import _VersionedKeyStore

    original_list = S3Backend.list_objects
    original_set, original_setlist, original_pop = (
        _VersionedKeyStore.__setitem__,
        _VersionedKeyStore.setlist,
        _VersionedKeyStore.pop,
    )

    def setitem(self: Any, key: str, value: Any) -> Any:
        with _lock:
            original_set(self, key, value)
            _added(self, key)

    def setlist(self: Any, key: Any, list_: Any) -> Any:
        with _lock:
            original_setlist(self, key, list_)
            _added(self, key)

    def pop(self: Any, key: str) -> None:
        with _lock:
            try:
                original_pop(self, key)
            finally:
                if not dict.__contains__(self, key):
                    _removed(self, key)

    def list_objects(
        self: Any,
        bucket: Any,
        prefix: str | None,
        delimiter: str | None,
        marker: str | None,
        max_keys: int | None,
    ) -> Any:
        keys = getattr(bucket, "keys", None)
        if not prefix or not isinstance(keys, _VersionedKeyStore):
            return original_list(self, bucket, prefix, delimiter, marker, max_keys)
        view: Any = _BucketView(_PrefixView(keys, prefix))  # all moto's list_objects reads of a bucket
        return original_list(self, view, prefix, delimiter, marker, max_keys)

    with _lock:
        _session[0] += 1
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(_VersionedKeyStore, "__setitem__", setitem))
        stack.enter_context(mock.patch.object(_VersionedKeyStore, "setlist", setlist))
        stack.enter_context(mock.patch.object(_VersionedKeyStore, "pop", pop))
        stack.enter_context(mock.patch.object(S3Backend, "list_objects", list_objects))
        yield
