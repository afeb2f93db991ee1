"""The prediction service, tested for real: uvicorn in a subprocess on 127.0.0.1, HTTP client."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, MIXED_TASKS, make_mixed

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import polyhead
from polyhead import MultiTaskNet, Task
from polyhead.persistence import FORMAT_VERSION

BIN = Path(sys.executable).parent / "polyhead"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, path, body=None, method=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def start_server(model_dir, *args, log=subprocess.DEVNULL):
    """`polyhead serve` on a free loopback port; returns (process, base URL) once it answers."""
    port = free_port()
    proc = subprocess.Popen([str(BIN), "serve", str(model_dir), "--port", str(port), *map(str, args)],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if call(base, "/ready")[0] == 200:
                return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"polyhead serve did not start on port {port}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    X, y = make_mixed(n=200)
    tasks = [*(Task(n, kind=k) for n, k in MIXED_TASKS.items()),
             Task("tags", kind="multilabel", columns=("t1", "t2", "t3"))]
    model = MultiTaskNet(tasks=tasks, **FAST).fit(X, y)
    model.save(tmp / "model")
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - kept open for the server's lifetime
    proc, base = start_server(tmp / "model", "--max-rows", "50", "--max-body-mb", "0.01", log=log)
    yield base, model, X, tmp / "server.log"
    proc.terminate()
    proc.wait(10)
    log.close()


def rows_of(X):
    return json.loads(X.to_json(orient="records"))


def test_health_ready_metadata(server):
    base, *_ = server
    assert call(base, "/health") == (200, {"status": "ok"})
    assert call(base, "/ready") == (200, {"ready": True})
    status, meta = call(base, "/metadata")
    assert status == 200
    assert [t["name"] for t in meta["tasks"]] == ["amount", "kind", "level", "tags"]
    assert meta["tasks"][1]["classes"] == ["no", "yes"]
    assert {f["name"]: f["type"] for f in meta["features"]} == {
        "a": "numeric", "b": "numeric", "colour": "categorical"}
    assert meta["polyhead_version"] == polyhead.__version__ and meta["format_version"] == FORMAT_VERSION
    with urllib.request.urlopen(base + "/docs") as resp:
        assert resp.status == 200 and b"swagger" in resp.read().lower()
    with urllib.request.urlopen(base + "/openapi.json") as resp:
        spec = json.loads(resp.read())
    assert "/predict" in spec["paths"]


def test_predictions_equal_the_python_api(server):
    base, model, X, _ = server
    sample = X.iloc[:20]
    status, body = call(base, "/predict?proba=true", {"rows": rows_of(sample)})
    assert status == 200
    want = model.predict_frame(sample)
    got = pd.DataFrame(body["predictions"])
    np.testing.assert_allclose(got["amount"], want["amount"], rtol=1e-6)
    assert got["kind"].tolist() == want["kind"].tolist()
    assert got["level"].tolist() == want["level"].tolist()
    assert got["t2"].tolist() == want["t2"].tolist()
    proba = model.predict_proba(sample)
    first = body["probabilities"][0]
    assert first["kind"]["yes"] == pytest.approx(proba["kind"].iloc[0]["yes"], rel=1e-6)
    assert set(first["level"]) == {"0", "1", "2"}
    columns = {c: sample[c].tolist() for c in sample.columns}
    status, body2 = call(base, "/predict", {"columns": columns})
    assert status == 200 and body2["predictions"] == body["predictions"]
    assert "probabilities" not in body2


def test_missing_values_are_imputed_like_the_python_api(server):
    base, model, _, _ = server
    row = {"a": None, "b": 0.3, "colour": None}
    status, body = call(base, "/predict", {"rows": [row]})
    assert status == 200
    want = model.predict_frame(pd.DataFrame([row]).astype({"colour": object, "a": float}))
    assert body["predictions"][0]["amount"] == pytest.approx(want["amount"].iloc[0], rel=1e-6)
    # NaN in JSON (a non-standard token Python accepts) is a missing value too
    status, _ = call(base, "/predict", raw=b'{"rows": [{"a": NaN, "b": 0.1, "colour": "red"}]}')
    assert status == 200


@pytest.mark.parametrize("payload, status, where", [
    ({"rows": [{"a": "x", "b": 1.0, "colour": "red"}]}, 422, "rows.0.a"),
    ({"rows": [{"a": 1.0, "b": 1.0, "colour": "red"}, {"a": 1.0, "colour": "red"}]}, 422, "rows.1.b"),
    ({"rows": [{"a": 1.0, "b": 1.0, "colour": "red", "extra": 1}]}, 422, "rows.0.extra"),
    ({"rows": []}, 422, "empty batch"),
    ({}, 422, "exactly one of 'rows' or 'columns'"),
    ({"columns": {"a": [1.0], "b": [1.0, 2.0], "colour": ["red"]}}, 422, "different lengths"),
    ({"rows": [{"a": 1.0, "b": 1.0, "colour": "red"}] * 51}, 413, "over the limit of 50 rows"),
])
def test_bad_requests_name_field_and_row(server, payload, status, where):
    base, *_ = server
    got, body = call(base, "/predict", payload)
    assert got == status, body
    text = body.get("message") or body.get("detail")
    assert where in str(text), body
    assert call(base, "/health")[0] == 200           # still answering


def test_infinity_is_a_422_not_a_500(server):
    base, *_ = server
    status, body = call(base, "/predict", raw=b'{"rows": [{"a": 1.0, "b": Infinity, "colour": "red"}]}')
    assert status == 422 and "rows.0.b" in body["message"] and "finite" in body["message"]


def test_body_over_the_limit_is_413(server):
    base, *_ = server
    big = json.dumps({"rows": [{"a": 1.0, "b": 1.0, "colour": "x" * 20000}]}).encode()
    status, body = call(base, "/predict", raw=big)
    assert status == 413 and "over the limit of 10485 bytes" in body["detail"]


def test_chunked_body_over_the_limit_is_413(server):
    """No Content-Length (chunked transfer): the limit counts the bytes actually received."""
    import http.client
    from urllib.parse import urlparse

    base, *_ = server
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    chunks = [b'{"rows": [{"a": 1.0, "b": 1.0, "colour": "', b"x" * 20000, b'"}]}']
    conn.request("POST", "/predict", body=iter(chunks), encode_chunked=True,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 413 and "over the limit of 10485 bytes" in body["detail"], body
    assert call(base, "/health")[0] == 200


def test_access_log_has_no_bodies(server):
    base, _, _, log = server
    call(base, "/predict", {"rows": [{"a": 0.123456, "b": 1.0, "colour": "red"}]})
    time.sleep(0.3)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    predicts = [r for r in lines if r["path"] == "/predict"]
    assert predicts and {"method", "status", "rows", "latency_ms"} <= set(predicts[-1])
    assert predicts[-1]["rows"] == 1
    assert "0.123456" not in log.read_text()


def test_refuses_to_start_on_a_bad_model_dir(tmp_path):
    out = subprocess.run([str(BIN), "serve", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "is not a polyhead model directory" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_several_workers_serve_the_same_model(server, tmp_path):
    _, model, X, _ = server
    model.save(tmp_path / "m")
    proc, base = start_server(tmp_path / "m", "--workers", "2")
    try:
        status, body = call(base, "/predict", {"rows": rows_of(X.iloc[:3])})
        assert status == 200 and len(body["predictions"]) == 3
    finally:
        proc.terminate()
        proc.wait(20)


def test_huge_values_are_a_422_naming_row_and_feature(server):
    base, *_ = server
    for query in ("", "?proba=true"):
        status, body = call(base, "/predict" + query,
                            {"rows": [{"a": 1.0, "b": 0.1, "colour": "red"},
                                      {"a": 1e300, "b": 0.1, "colour": "red"}]})
        assert status == 422 and "rows.1.a" in body["message"], body


def test_docs_work_offline(server):
    """/docs loads its scripts from the service itself: no CDN, no network."""
    import re

    base, *_ = server
    with urllib.request.urlopen(base + "/docs") as resp:
        page = resp.read().decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and not [s for s in sources if s.startswith(("http://", "https://", "//"))]
    for source in sources:
        with urllib.request.urlopen(base + source) as resp:
            assert resp.status == 200 and len(resp.read()) > 100
    with urllib.request.urlopen(base + "/openapi.json") as resp:
        spec = json.loads(resp.read())
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/PredictRequest"
    assert "Row" in spec["components"]["schemas"]


def test_row_limit_is_checked_before_validation(tmp_path):
    X, y = make_mixed(n=60)
    MultiTaskNet(tasks={"amount": "regression"}, **FAST).fit(X, y[["amount"]]).save(tmp_path / "m")
    proc, base = start_server(tmp_path / "m", "--max-rows", "1000")
    try:
        status, body = call(base, "/predict", {"rows": [{"oops": 1}] * 200_000})
        assert status == 413 and "batch of 200000 rows" in body["detail"]
        status, body = call(base, "/predict", {"columns": {"a": [1.0] * 5000}})
        assert status == 413 and "batch of 5000 rows" in body["detail"]
    finally:
        proc.terminate()
        proc.wait(20)


def test_any_column_name_is_servable(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"_private": rng.normal(size=60), "model_config": rng.normal(size=60),
                      "a b": rng.choice(["x", "y"], 60), "1st": rng.normal(size=60)})
    y = pd.DataFrame({"t": X["_private"] + X["model_config"]})
    model = MultiTaskNet(**FAST).fit(X, y)
    model.save(tmp_path / "m")
    proc, base = start_server(tmp_path / "m")
    try:
        rows = rows_of(X.head(3))
        status, body = call(base, "/predict", {"rows": rows})
        assert status == 200, body
        np.testing.assert_allclose([r["t"] for r in body["predictions"]],
                                   model.predict(X.head(3))["t"], rtol=1e-6)
        status, body = call(base, "/predict", {"columns": {c: X[c].head(2).tolist() for c in X}})
        assert status == 200, body
        del rows[1]["_private"]
        status, body = call(base, "/predict", {"rows": rows})
        assert status == 422 and "rows.1._private" in body["message"]
    finally:
        proc.terminate()
        proc.wait(20)


def test_sigterm_stops_within_seconds_with_a_request_in_flight(tmp_path):
    """A client that sent its headers but not all of its body: without a shutdown timeout the
    server waits for it forever; with one it stops within seconds."""
    X, y = make_mixed(n=60)
    MultiTaskNet(tasks={"amount": "regression"}, **FAST).fit(X, y[["amount"]]).save(tmp_path / "m")
    proc, base = start_server(tmp_path / "m")
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 1000\r\n\r\n{\"rows\": [")
    time.sleep(0.5)
    start = time.monotonic()
    proc.terminate()
    try:
        proc.wait(10)
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - start < 10


def test_new_kinds_and_conditions_are_served(tmp_path):
    from test_kinds import NEW_TASKS, mixed_kinds

    X, y = mixed_kinds(200)
    y = y.assign(buys=X.b > 0, amount=np.where(X.b > 0, 5 + X.a, 0.0))
    tasks = [*NEW_TASKS, Task("buys"), Task("amount", kind="regression", given="buys", otherwise=0.0)]
    model = MultiTaskNet(tasks=tasks, **FAST).fit(X, y)
    model.save(tmp_path / "m")
    proc, base = start_server(tmp_path / "m")
    try:
        status, body = call(base, "/predict?proba=true", {"rows": rows_of(X.head(4))})
        assert status == 200, body
        first = body["predictions"][0]
        assert set(first) == {"visits", "grade", "y:q0.1", "y:q0.5", "y:q0.9", "buys", "amount"}
        want = model.predict_frame(X.head(4))
        assert [r["grade"] for r in body["predictions"]] == want["grade"].tolist()
        np.testing.assert_allclose([r["y:q0.9"] for r in body["predictions"]], want["y:q0.9"], rtol=1e-6)
        assert set(body["probabilities"][0]) == {"grade", "buys"}
        status, meta = call(base, "/metadata")
        kinds = {t["name"]: t for t in meta["tasks"]}
        assert kinds["y"]["quantiles"] == [0.1, 0.5, 0.9] and kinds["grade"]["kind"] == "ordinal"
        with urllib.request.urlopen(base + "/openapi.json") as resp:
            spec = json.loads(resp.read())
        row = spec["components"]["schemas"]["PredictResponse"]["properties"]["predictions"]["items"]
        assert row["properties"]["grade"]["type"] == "string"
        assert row["properties"]["visits"]["type"] == "number"
        assert {"type": "null"} in row["properties"]["amount"]["anyOf"]
    finally:
        proc.terminate()
        proc.wait(20)


def test_conformal_intervals_are_served(tmp_path):
    X, y = make_mixed(n=400)
    model = polyhead.Conformal(polyhead.MultiTaskGBM(n_estimators=20), tasks=MIXED_TASKS,
                               alpha=0.1, random_state=0).fit(X, y)
    model.save(tmp_path / "m")
    proc, base = start_server(tmp_path / "m")
    try:
        status, body = call(base, "/predict?intervals=true", {"rows": rows_of(X.head(3))})
        assert status == 200, body
        first = body["intervals"][0]
        assert set(first["amount"]) == {"lower", "upper"}
        assert set(first["kind"]["set"]) <= {"yes", "no"} and isinstance(first["level"]["set"], list)
        regions = model.predict_intervals(X.head(3))
        assert first["amount"]["lower"] == pytest.approx(regions["amount"]["lower"].iloc[0], rel=1e-6)
    finally:
        proc.terminate()
        proc.wait(20)


def test_an_onnx_export_is_served_without_torch(tmp_path):
    """`polyhead serve model.onnx`: onnxruntime answers as the torch runtime does, and the
    service process never imports torch."""
    pytest.importorskip("onnxruntime")
    X, y = make_mixed(n=120)
    tasks = [*(Task(n, kind=k) for n, k in MIXED_TASKS.items()),
             Task("tags", kind="multilabel", columns=("t1", "t2", "t3"))]
    model = MultiTaskNet(tasks=tasks, **FAST).fit(X, y)
    model.to_onnx(tmp_path / "m.onnx")
    proc, base = start_server(tmp_path / "m.onnx", "--runtime", "onnx")
    try:
        rows = rows_of(X.head(7))
        status, got = call(base, "/predict?proba=true", {"rows": rows})
        assert status == 200
        expected = model.predict(X.head(7))
        for i, row in enumerate(got["predictions"]):
            assert row["kind"] == expected["kind"].iloc[i] and row["level"] == expected["level"].iloc[i]
            assert row["t1"] == expected["t1"].iloc[i]
            assert abs(row["amount"] - expected["amount"].iloc[i]) <= 1e-4 * max(1, abs(row["amount"]))
        proba = model.predict_proba(X.head(7))["level"]
        assert abs(got["probabilities"][0]["level"][str(proba.columns[0])] - proba.iloc[0, 0]) < 1e-5
        status, meta = call(base, "/metadata")
        assert status == 200 and meta["format_version"] == "onnx"
        assert [t["name"] for t in meta["tasks"]] == ["amount", "kind", "level", "tags"]
        status, bad = call(base, "/predict", {"rows": [{"a": 1.0}]})
        assert status == 422 and "b" in bad["message"]             # a missing feature named
        status, bad = call(base, "/predict", {"rows": [{**rows[0], "a": 1e39}]})
        assert status == 422 and "rows.0.a" in bad["message"]
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        columns["colour"][0] = None                                 # missing: as in Python
        status, got = call(base, "/predict", {"columns": columns})
        X_missing = X.head(7).copy()
        X_missing["colour"] = X_missing["colour"].astype(object)
        X_missing.iloc[0, X_missing.columns.get_loc("colour")] = None
        assert status == 200 and got["predictions"][0]["level"] == model.predict(X_missing)["level"].iloc[0]
        modules = subprocess.run(["cat", f"/proc/{proc.pid}/maps"], capture_output=True, text=True)
        assert "libtorch" not in modules.stdout                     # torch was never loaded
        assert "/sklearn/" not in modules.stdout                    # nor scikit-learn (lazy NotFittedError)
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_runtime_options_are_checked(tmp_path, capsys):
    from conftest import cli

    code, _, err = cli(capsys, "serve", tmp_path, "--runtime", "onnx")
    assert code == 2 and "polyhead export" in err
    code, _, err = cli(capsys, "serve", tmp_path / "m.onnx", "--runtime", "torch")
    assert code == 2 and "--runtime onnx" in err
