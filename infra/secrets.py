"""Provider key secrets, created with no keys: fill them after deploy (see README).

Each provider's API keys have one secret, read by graph-step and the credits poller. An OpenRouter
management key (it reads the account balance, GET /api/v1/credits) has its own secret, created empty
and read by the credits poller only: it can manage keys, so graph-step never gets it.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from stepgraph import resources

PROVIDERS = ("openrouter", "ollama", "groq", "cerebras", "nvidia")  # the built-in provider table's
MANAGED_PROVIDERS = ("openrouter",)  # providers whose account balance needs a management key


class ProviderSecrets(Construct):
    def __init__(self, scope: Construct, cid: str, *, removal: RemovalPolicy) -> None:
        super().__init__(scope, cid)
        self.secrets: dict[str, sm.Secret] = {}
        self.management: dict[str, sm.Secret] = {}
        for provider in PROVIDERS:
            self.secrets[provider] = sm.Secret(
                self,
                provider.title(),
                secret_name=f"{resources.SECRET_PREFIX}{provider}",
                description=f'{provider} API keys for stepgraph: {{"keys": [{{"label": "main", "key": "..."}}]}}',
                secret_string_value=SecretValue.unsafe_plain_text('{"keys": []}'),  # no key in the template
                removal_policy=removal,
            )
        for provider in MANAGED_PROVIDERS:
            self.management[provider] = sm.Secret(
                self,
                f"{provider.title()}Management",
                secret_name=f"{resources.SECRET_PREFIX}{provider}{resources.MANAGEMENT_SECRET_SUFFIX}",
                description=f"{provider} management key (account balance) for the stepgraph credits poller: "
                '{"key": "..."}; leave the key empty to go without',
                secret_string_value=SecretValue.unsafe_plain_text('{"key": ""}'),  # no key in the template
                removal_policy=removal,
            )
