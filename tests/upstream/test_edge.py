"""The upstream edge: its status -> error mapping, and the model id a channel sets
when it sends (ids differ per provider)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from proxy.adaptors.anthropic import AnthropicAdaptor
from proxy.adaptors.base import RequestRules, with_model
from proxy.catalog import default_catalog
from proxy.config import ConfigError, UpstreamConfig, load_config
from proxy.serve import serve
from proxy.upstream.base import UpstreamRequest
from proxy.upstream.channels import provider_model_ids
from proxy.upstream.status import RETRYABLE, upstream_error
from tests.conftest import MESSAGE, make_account
from tests.upstream.conftest import ODD_STATUSES, raw_upstream

RETRY = (("retry-after", "7"), ("x-should-retry", "true"), ("set-cookie", "no"))


@pytest.mark.parametrize("status, body, expected", [
    (429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}',
     (429, "rate_limit_error", "slow down")),
    (529, b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}',
     (529, "overloaded_error", "busy")),
    (500, b'{"type":"error","error":{"type":"some_internal","message":"oops"}}', (500, "api_error", "oops")),
    (503, b"<html>bad gateway</html>", (503, "api_error", "Upstream answered HTTP 503")),
    (400, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}',
     (400, "invalid_request_error", "bad")),
    (404, b'{"error": "not an object"}', (404, "not_found_error", "Upstream answered HTTP 404")),
    (400, b'[1, 2]', (400, "invalid_request_error", "Upstream answered HTTP 400")),
    (400, b'\xff\xfe', (400, "invalid_request_error", "Upstream answered HTTP 400")),
    (401, b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
     (502, "api_error", "The gateway's upstream credentials were refused")),
    (403, b"", (502, "api_error", "The gateway's upstream credentials were refused")),
])
def test_upstream_status_maps_to_the_clients_error(status, body, expected):
    error = upstream_error(status, body, RETRY)
    assert (error.status, error.error_type, error.message) == expected
    # Only the retry headers pass, and never on a refused credential (they are ours, not the client's).
    assert error.headers == (() if status in (401, 403) else (("retry-after", "7"), ("x-should-retry", "true")))


def test_only_answers_about_capacity_are_retryable_elsewhere():
    assert RETRYABLE == {429, 500, 502, 503, 504, 529}
    assert not RETRYABLE & {400, 401, 403, 404, 413}


def _parsed(model: str, extra: bytes = b""):
    raw = b'{"model": "%s", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]%s}' % (
        model.encode(), extra)
    return raw, AnthropicAdaptor().parse(raw, RequestRules(default_catalog()))


def test_the_clients_bytes_go_as_they_are_when_the_provider_names_the_model_the_same():
    raw, parsed = _parsed("claude-sonnet-4-5-20250929")
    request = UpstreamRequest("/v1/messages", parsed.model, {}, parsed.encoded)
    assert request.body() is raw
    assert request.body("claude-sonnet-4-5-20250929") is raw


def test_each_provider_id_is_written_once_and_the_rest_of_the_body_kept():
    raw, parsed = _parsed("claude-sonnet-4.5", b', "future_field": {"x": [1.5]}')
    calls = []

    def encode(model_id):
        calls.append(model_id)
        return parsed.encoded(model_id)

    request = UpstreamRequest("/v1/messages", parsed.model, {}, encode)
    default = json.loads(request.body())
    other = json.loads(request.body("us.anthropic.claude-sonnet-4-5-v1:0"))
    request.body()
    request.body("us.anthropic.claude-sonnet-4-5-v1:0")
    assert calls == ["claude-sonnet-4-5-20250929", "us.anthropic.claude-sonnet-4-5-v1:0"]
    assert default["model"] == "claude-sonnet-4-5-20250929"
    assert other["model"] == "us.anthropic.claude-sonnet-4-5-v1:0"
    assert {k: v for k, v in other.items() if k != "model"} == {k: v for k, v in default.items() if k != "model"}
    assert other["future_field"] == {"x": [1.5]}
    assert parsed.body["model"] == "claude-sonnet-4.5"  # the parsed body itself is not changed


def test_a_body_naming_model_twice_is_always_written_anew():
    raw, parsed = _parsed("claude-sonnet-4-5-20250929", b', "metadata": {"model": "x"}')
    assert raw.count(b'"model"') == 2
    assert parsed.encoded("claude-sonnet-4-5-20250929") != raw


def test_with_model_leaves_its_argument_alone():
    body = {"model": "a", "x": 1}
    assert json.loads(with_model(body, "b")) == {"model": "b", "x": 1} and body == {"model": "a", "x": 1}


def test_model_ids_are_checked_against_the_catalog(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[upstream.model_ids]\n"claude-sonnet-4-5" = "provider-sonnet"\n')
    config = load_config(str(path), env={})
    assert provider_model_ids(config.upstream, config.catalog()) == {"claude-sonnet-4.5": "provider-sonnet"}
    for bad, words in (('"claude-nonexistent-9" = "x"', "not a model of the catalog"),
                       ('"claude-sonnet-4.5" = ""', "non-empty string"),
                       ('"claude-sonnet-4.5" = 3', "non-empty string")):
        path.write_text(f"[upstream.model_ids]\n{bad}\n")
        with pytest.raises(ConfigError, match=words):
            load_config(str(path), env={})
    path.write_text('[upstream]\nmodel_ids = "x"\n')
    with pytest.raises(ConfigError, match="upstream.model_ids"):
        load_config(str(path), env={})


async def test_the_upstream_receives_its_own_model_id(nursery, config, simulator):
    """Over real HTTP: a provider that calls Sonnet 4.5 otherwise gets its own id, on
    every route that sends a model (streamed, whole, count_tokens); the client's answer
    and the bill name the catalog's model."""
    config = replace(config, upstream=replace(config.upstream,
                                              model_ids=(("claude-sonnet-4.5", "provider-sonnet-45"),)))
    running = await nursery.start(serve, config)
    alice = await make_account(running)
    client = alice.anthropic()
    whole = await client.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=20, messages=MESSAGE)
    async with client.messages.stream(model="claude-sonnet-4.5", max_tokens=20, messages=MESSAGE) as stream:
        await stream.get_final_message()
    await client.messages.count_tokens(model="claude-sonnet-4.5", messages=MESSAGE)
    await client.messages.create(model="claude-haiku-4.5", max_tokens=20, messages=MESSAGE)
    models = [s.model for s in simulator.seen()]
    assert models == ["provider-sonnet-45", "provider-sonnet-45", "claude-haiku-4-5-20251001"]
    assert [s.model for s in simulator.seen("/v1/messages/count_tokens")] == ["provider-sonnet-45"]
    assert whole.content
    rows = await running.gateway.store.usage("alice", 10)
    assert sorted(r.model for r in rows) == ["claude-haiku-4.5", "claude-sonnet-4.5", "claude-sonnet-4.5"]


# -- a status that is neither 200 nor an error; a key quoted back ------------------------------

@pytest.mark.parametrize("response", ODD_STATUSES, ids=["204", "302"])
async def test_an_upstream_2xx_or_3xx_other_than_200_is_a_502_never_passed_on(nursery, config, response):
    """The client asked for a message: a 204 (success, no body) or a redirect from the
    upstream is the upstream failing, a 502 api_error, never the client's status."""
    url = await raw_upstream(nursery, response)
    running = await nursery.start(serve, replace(config, upstream=UpstreamConfig(url=url, first_byte_timeout=5)))
    account = await make_account(running)
    before = await account.balance()
    body = {"model": "claude-haiku-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    for stream in (False, True):
        async with account.http() as http:
            answer = await http.post("/v1/messages", json={**body, "stream": stream})
        assert answer.status_code == 502, (stream, answer.status_code, answer.text)
        assert answer.json()["error"]["type"] == "api_error"
    await account.settled(2)
    assert await account.balance() == before


async def test_an_upstream_error_echoing_the_channel_key_does_not_hand_it_to_the_client(nursery, config):
    """The upstream's error message goes to the client: one that quotes the credential it
    was sent (some providers do) must not give the operator's key away."""
    secret = "sk-ant-channel-secret-0123456789"
    body = ('{"type":"error","error":{"type":"invalid_request_error","message":"bad request for key %s"}}'
            % secret).encode()
    url = await raw_upstream(nursery, b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                       b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
    running = await nursery.start(serve, replace(config, upstream=UpstreamConfig(url=url, api_key=secret,
                                                                                 first_byte_timeout=5)))
    account = await make_account(running)
    ask = {"model": "claude-haiku-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with account.http() as http:
        answers = [await http.post("/v1/messages", json={**ask, "stream": stream}) for stream in (False, True)]
        answers.append(await http.post("/v1/messages/count_tokens", json={**ask}))
    for answer in answers:
        assert answer.status_code == 400 and "bad request for key" in answer.text
        assert secret not in answer.text
