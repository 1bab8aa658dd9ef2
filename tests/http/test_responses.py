"""The one JSON helper: json.dumps' spacing, byte for byte (the transfer API's and the
error bodies' consumers compare them)."""

from proxy.http.responses import json_bytes, json_response


def test_json_bytes_keep_json_dumps_spacing():
    assert json_bytes({"success": True, "amount": 1.5, "to": ["é"]}) == b'{"success": true, "amount": 1.5, "to": ["\\u00e9"]}'


async def test_json_response():
    response = json_response({"ok": True}, 429, [("retry-after", "3")])
    assert response.status_code == 429 and response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "3"
    assert await response.get_data() == b'{"ok": true}'
