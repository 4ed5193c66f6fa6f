"""Provider key secrets, created with no keys: fill them after deploy (see README)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from stepgraph import resources

PROVIDERS = ("openrouter", "ollama")


class ProviderSecrets(Construct):
    def __init__(self, scope: Construct, cid: str, *, removal: RemovalPolicy) -> None:
        super().__init__(scope, cid)
        self.secrets: dict[str, sm.Secret] = {}
        for provider in PROVIDERS:
            self.secrets[provider] = sm.Secret(
                self,
                provider.title(),
                secret_name=f"{resources.SECRET_PREFIX}{provider}",
                description=f'{provider} API keys for stepgraph: {{"keys": [{{"label": "main", "key": "..."}}]}}',
                secret_string_value=SecretValue.unsafe_plain_text('{"keys": []}'),  # no key in the template
                removal_policy=removal,
            )
