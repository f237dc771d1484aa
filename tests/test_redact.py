"""Credentials in the tracking URI: redacted in what rethink writes (MLflow, logs, console), and
handed to MLflow as basic auth, never inside a URL it could print."""

import base64
import http.server
import logging
import os
import threading

import pytest

from rethink.run import redact, track


@pytest.mark.parametrize("text, want", [
    ("http://user:secret@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
    ("mlflow.tracking_uri=http\\://user\\:secret@host\\:5000", "mlflow.tracking_uri=http\\://***@host\\:5000"),  # Hydra
    ("['mlflow.tracking_uri=https\\\\://u\\\\:p%40ss@h']", "['mlflow.tracking_uri=https\\\\://***@h']"),  # repr of it
    ("a https://token@host/x and databricks://p:q@w", "a https://***@host/x and databricks://***@w"),
    ("http://***@host", "http://***@host"),  # twice is once
    ("sqlite:////tmp/x@y/mlflow.db http://host:5000/a@b user@example.com", None),  # no credentials: unchanged
])
def test_redact_hides_the_userinfo_of_every_uri(text, want):
    assert redact.redact(text) == (want or text)


def test_redact_values_and_split_credentials():
    cfg = {"mlflow": {"tracking_uri": "http://u:s@h:1"}, "seed": 0, "list": ["http://u:s@h", 1.5]}
    assert redact.redact_values(cfg) == {"mlflow": {"tracking_uri": "http://***@h:1"}, "seed": 0,
                                         "list": ["http://***@h", 1.5]}
    assert redact.split_credentials("http://us%40er:p%3Ass@h:1/path") == ("http://h:1/path", "us@er", "p:ss")
    assert redact.split_credentials("http://h:1") == ("http://h:1", None, None)
    assert redact.split_credentials("sqlite:////tmp/mlflow.db") == ("sqlite:////tmp/mlflow.db", None, None)


def test_log_records_are_redacted_when_created(caplog):
    old = logging.getLogRecordFactory()
    logging.setLogRecordFactory(redact.redacting(old))
    log = logging.getLogger("test.redact")
    try:
        with caplog.at_level(logging.INFO, "test.redact"):
            log.info("store %s, job %d", "http://u:hunter2@h", 3)
            try:
                raise ValueError("API request to http://u:hunter2@h/api failed")
            except ValueError:
                log.exception("failed")
    finally:
        logging.setLogRecordFactory(old)
    assert "store http://***@h, job 3" in caplog.text and "http://***@h/api" in caplog.text
    assert "hunter2" not in caplog.text


def test_the_console_streams_are_redacted():
    import io

    out = io.StringIO()
    stream = redact.RedactingStream(out)
    assert stream.write("Error executing job with overrides: ['u=http\\://a\\:hunter2@h']\n") > 0
    assert out.getvalue() == "Error executing job with overrides: ['u=http\\://***@h']\n"
    assert stream.getvalue() == out.getvalue()  # everything else is the wrapped stream's


def test_credentials_reach_the_server_as_basic_auth_not_in_urls(monkeypatch):
    """MLflow gets the URI without them and the credentials through MLFLOW_TRACKING_USERNAME/PASSWORD."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    try:
        uri = f"http://alice:s%3Acret@127.0.0.1:{server.server_port}"
        assert track.client(uri).get_experiment_by_name("nope") is None
        assert track.mlflow_uri(uri) == f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
    assert seen and all(auth == "Basic " + base64.b64encode(b"alice:s:cret").decode() for _, auth in seen)
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s:cret"
