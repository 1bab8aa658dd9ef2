"""Configuration: frozen dataclasses (settings.py) built from defaults < TOML file <
CHEAPLM_* env < flags (load.py) and checked as a whole (checks.py).

Upstream choice: an explicit ``upstream.url`` is used as given (with the key if
one is set). With no URL and no key, the gateway runs the built-in simulated
upstream in-process and says so in its log and in ``/health``. With a key but
no URL, the upstream is Anthropic's API.
"""

from .load import known_keys, load_config
from .settings import (ANTHROPIC_API_URL, MAX_WORKERS, PORTS, AccountsConfig, ChannelConfig, Config, ConfigError, PaymentsConfig,
                       RoutingConfig, StripeConfig, UpstreamConfig)

__all__ = ["ANTHROPIC_API_URL", "MAX_WORKERS", "PORTS", "AccountsConfig", "ChannelConfig", "Config", "ConfigError", "PaymentsConfig",
           "RoutingConfig", "StripeConfig", "UpstreamConfig", "known_keys", "load_config"]
