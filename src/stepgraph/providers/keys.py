"""API keys per provider, with labels. Keys are never logged: only labels are.

Locally keys come from an env var (`key` or `label=key,label=key`); in AWS from a Secrets Manager
secret `{"keys": [{"label": ..., "key": ...}]}`, read once per container. A 401 retires a key and the
next key of the same account takes over; with none left the call fails fast.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from stepgraph.errors import ConfigError
from stepgraph.providers.table import ProviderSpec


class KeyRing:
    def __init__(self, provider: str, keys: list[tuple[str, str]]) -> None:
        self.provider = provider
        self._keys = list(keys)
        self._lock = threading.Lock()

    def current(self) -> tuple[str, str] | None:
        with self._lock:
            return self._keys[0] if self._keys else None

    def retire(self, label: str) -> None:
        with self._lock:
            self._keys = [k for k in self._keys if k[0] != label]

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self._keys]

    def __repr__(self) -> str:  # never show key values
        return f"KeyRing({self.provider!r}, labels={self.labels})"


def parse_keys(raw: str) -> list[tuple[str, str]]:
    out = []
    for i, part in enumerate(p.strip() for p in raw.split(",") if p.strip()):
        label, sep, key = part.partition("=")
        out.append(
            (label.strip(), key.strip()) if sep and not label.startswith("sk-") else (f"key{i + 1}", part)
        )
    return out


# botocore logs every response body at DEBUG; a secret's body holds the keys. Its records are dropped
# while this thread reads a secret, so a DEBUG root logger (e.g. Lambda's log-level setting) shows none.
_reading_secret = threading.local()


class _HideSecretBodies(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_reading_secret, "active", False)


def _secret_string(client: Any, secret_id: str) -> str | None:
    parsers = logging.getLogger("botocore.parsers")
    if not any(isinstance(f, _HideSecretBodies) for f in parsers.filters):
        parsers.addFilter(_HideSecretBodies())
    _reading_secret.active = True
    try:
        raw: str | None = client.get_secret_value(SecretId=secret_id)["SecretString"]
        return raw
    finally:
        _reading_secret.active = False


def load_keys(
    name: str, spec: ProviderSpec, *, env: Mapping[str, str], secrets_client: Any = None
) -> KeyRing:
    """The provider's keys: from `env[spec.keys_env]` when set, else from its Secrets Manager secret."""
    if spec.keys_env and env.get(spec.keys_env):
        return KeyRing(name, parse_keys(env[spec.keys_env]))
    if spec.secret_id and secrets_client is not None:
        try:
            raw = _secret_string(secrets_client, spec.secret_id)
            keys = [(k["label"], k["key"]) for k in json.loads(raw or "{}").get("keys", [])]
        except Exception as exc:
            raise ConfigError(
                f"cannot read the keys of provider {name!r} from secret {spec.secret_id} ({type(exc).__name__})",
                hint='fill it with {"keys": [{"label": "main", "key": "..."}]}',
            ) from None
        return KeyRing(name, keys)
    return KeyRing(name, [])


def load_management_key(
    name: str, spec: ProviderSpec, *, env: Mapping[str, str], secrets_client: Any = None
) -> str | None:
    """The account's management key (reads the balance, GET /credits), or None when none is set.

    From `spec.management_key_env` locally, else from the secret `{"key": "..."}`; the stack creates
    that secret empty, and a secret that does not exist (an older stack) means no key too."""
    if spec.management_key_env and env.get(spec.management_key_env, "").strip():
        return env[spec.management_key_env].strip()
    if not spec.management_secret_id or secrets_client is None:
        return None
    try:
        raw = _secret_string(secrets_client, spec.management_secret_id)
        key = json.loads(raw or "{}").get("key") or ""
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            return None
        raise ConfigError(
            f"cannot read the management key of provider {name!r} from secret "
            f"{spec.management_secret_id} ({code or type(exc).__name__})",
            hint='fill it with {"key": "..."}, or leave it {"key": ""} to go without',
        ) from None
    if not isinstance(key, str):
        raise ConfigError(
            f"secret {spec.management_secret_id}: 'key' must be a string", hint='write {"key": "..."}'
        )
    return key.strip() or None
