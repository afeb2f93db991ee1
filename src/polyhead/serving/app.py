"""A prediction service for a saved model: FastAPI, run by uvicorn (``polyhead[serve]``).

The model is loaded once when the app is created. The request schema is generated from the
model's saved feature schema, so a wrong type, a missing feature, an unknown field or an empty
batch is answered with a 422 that names the field and the row, before the model sees it.

Endpoints: ``GET /health`` (liveness), ``GET /ready`` (model loaded), ``GET /metadata``,
``POST /predict`` (``{"rows": [...]}`` or ``{"columns": {...}}``; ``?proba=true`` adds
probabilities), OpenAPI at ``/docs``.
"""

# No `from __future__ import annotations`: FastAPI must resolve the request models, which
# are built inside create_app, from real annotation objects.
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._version import __version__

logger = logging.getLogger("polyhead.serve")
ENV_MODEL_DIR = "POLYHEAD_MODEL_DIR"
ENV_SETTINGS = "POLYHEAD_SERVE_SETTINGS"
GRACEFUL_SHUTDOWN_S = 3


@dataclass(frozen=True)
class ServeSettings:
    """Limits of the service.

    max_rows : largest batch accepted (413 above it).
    max_body_bytes : largest request body accepted (413 above it).
    allow_extra : accept and ignore unknown fields in a row (default: 422).
    """

    max_rows: int = 10_000
    max_body_bytes: int = 16 * 2**20
    allow_extra: bool = False


def _require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("polyhead serve needs FastAPI, fastapi-offline and uvicorn: "
                          "pip install 'polyhead[serve]'") from exc


def _feature_types(model: Any) -> dict[str, Any]:
    """A Python type per feature, from the fitted encoder (numbers may be null: imputed)."""
    types: dict[str, Any] = {}
    for col in model.feature_encoder().columns_:
        if col["type"] == "numeric":
            types[col["name"]] = float | None
        else:
            kinds = {type(c) for c in col["categories"]} or {str}
            if kinds <= {str}:
                types[col["name"]] = str | None
            elif kinds <= {bool}:
                types[col["name"]] = bool | None
            else:
                types[col["name"]] = str | int | float | bool | None
    return types


def create_app(model_dir: str | os.PathLike[str], settings: ServeSettings | None = None) -> Any:
    """The FastAPI app serving the model in ``model_dir`` (loaded now, once)."""
    _require_fastapi()
    import numpy as np
    import pandas as pd
    from fastapi import Query, Request
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse
    from fastapi_offline import FastAPIOffline
    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        ValidationError,
        create_model,
        model_validator,
    )
    from starlette.concurrency import run_in_threadpool

    from ..exceptions import PolyheadError

    settings = settings or ServeSettings()
    model, manifest = open_model(model_dir)
    names = list(model._feature_columns)
    types = _feature_types(model)
    extra: Literal["ignore", "forbid"] = "ignore" if settings.allow_extra else "forbid"
    # Fields get safe Python names (f0, f1, ...) and the column's name as their alias, so any
    # column name is servable: "_private", "model_config", "a b", "1st".
    fields = {f"f{i}": n for i, n in enumerate(names)}
    config = ConfigDict(extra=extra, populate_by_name=False, protected_namespaces=())
    Row = create_model(  # type: ignore[call-overload]
        "Row", __config__=config,
        **{f: (types[n], Field(..., alias=n, description=f"feature {n!r}"))
           for f, n in fields.items()})
    Columns = create_model(  # type: ignore[call-overload]
        "Columns", __config__=config,
        **{f: (list.__class_getitem__(types[n]), Field(..., alias=n, description=f"values of feature {n!r}"))
           for f, n in fields.items()})

    class PredictRequest(BaseModel):
        """One batch: ``rows`` (a list of objects) or ``columns`` (an object of lists)."""

        model_config = ConfigDict(extra="forbid")
        rows: list[Row] | None = None  # type: ignore[valid-type]
        columns: Columns | None = None  # type: ignore[valid-type]

        @model_validator(mode="after")
        def _one_form(self) -> Any:
            if (self.rows is None) == (self.columns is None):
                raise ValueError("give exactly one of 'rows' or 'columns'")
            if self.rows is not None and not self.rows:
                raise ValueError("empty batch: 'rows' has no rows")
            if self.columns is not None:
                lengths = {n: len(getattr(self.columns, f)) for f, n in fields.items()}
                if len(set(lengths.values())) > 1:
                    raise ValueError(f"'columns' have different lengths: {lengths}")
                if not next(iter(lengths.values()), 0):
                    raise ValueError("empty batch: 'columns' hold no values")
            return self

    tasks_meta = [t.metadata() for t in model.task_states_]
    metadata = {
        "polyhead_version": __version__, "model_polyhead_version": manifest.get("polyhead_version"),
        "format_version": manifest.get("format_version"), "estimator": manifest.get("estimator"),
        "tasks": tasks_meta,
        "features": [{"name": c["name"], "type": c["type"],
                      **({"categories": c["categories"]} if c["type"] == "categorical" else {})}
                     for c in model.feature_encoder().columns_],
        "limits": {"max_rows": settings.max_rows, "max_body_bytes": settings.max_body_bytes,
                   "allow_extra": settings.allow_extra},
    }
    # the docs page and its scripts are served from the package: /docs works offline
    app = FastAPIOffline(title="polyhead", version=__version__,
                         description=f"Predictions of the polyhead model in {Path(model_dir).name}")
    app.state.model = model

    app.add_middleware(LimitAndLog, max_body_bytes=settings.max_body_bytes)

    def invalid(errors: list[dict[str, Any]]) -> Any:
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return JSONResponse(status_code=422, content={
            "detail": errors, "message": f"{where}: {first['msg']}" if where else first["msg"]})

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> Any:
        """Readiness: the model is loaded and can predict."""
        if getattr(app.state, "model", None) is None:
            return JSONResponse(status_code=503, content={"ready": False})
        return {"ready": True}

    @app.get("/metadata")
    def get_metadata() -> dict[str, Any]:
        """Tasks, kinds, classes, feature names and types, versions and limits."""
        return metadata

    def too_many(rows: int) -> Any:
        request_rows = {"detail": f"batch of {rows} rows is over the limit of "
                                  f"{settings.max_rows} rows"}
        return JSONResponse(status_code=413, content=request_rows)

    def run_model(frame: Any, proba: bool, intervals: bool) -> Any:
        out = model.predict_frame(frame, proba=False)
        probabilities = model.predict_proba(frame) if proba and _has_proba(model) else None
        regions = model.predict_intervals(frame) if intervals else None
        return out, probabilities, regions

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}}})
    async def predict(request: Request,
                      proba: bool = Query(False, description="also return class probabilities"),
                      intervals: bool = Query(False, description="also return each task's conformal "
                                              "interval or set (a model fitted with Conformal)")) -> Any:
        """Predictions per row, in row order."""
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            return invalid([{"loc": ["body"], "msg": f"the body is not valid JSON: {exc}",
                             "type": "json_invalid"}])
        # Count rows before validating them: a batch over the limit is refused at once, not
        # after every one of its rows has been checked.
        rows = _count_rows(payload)
        request.state.rows = rows
        if rows > settings.max_rows:
            return too_many(rows)
        try:
            body = PredictRequest.model_validate(payload)
        except ValidationError as exc:
            return invalid([{"loc": ["body", *e.get("loc", ())], "msg": e.get("msg", ""),
                             "type": e.get("type", "")} for e in exc.errors()])
        if body.rows is not None:
            columns = {n: [getattr(r, f) for r in body.rows] for f, n in fields.items()}
        else:
            columns = {n: list(getattr(body.columns, f)) for f, n in fields.items()}
        n_rows = len(next(iter(columns.values())))
        request.state.rows = n_rows
        bad = _non_finite(columns, types)
        if bad is not None:
            row, name, value = bad
            loc = ["body", "rows", row, name] if body.rows is not None else ["body", "columns", name, row]
            msg = (f"value {value:g} is not allowed: features must be finite and below "
                   f"{np.finfo(np.float32).max:.3g} in size (null means missing)")
            return invalid([{"loc": loc, "msg": msg, "type": "finite_number"}])
        if intervals and not hasattr(model, "predict_intervals"):
            return invalid([{"loc": ["query", "intervals"], "type": "value_error",
                             "msg": "this model has no conformal intervals (fit it with Conformal)"}])
        try:
            if hasattr(model, "predict_columns"):  # onnxruntime: lists in, rows out, no pandas
                records, probability_rows = await run_in_threadpool(
                    model.predict_columns, columns, proba and _has_proba(model))
                fast: dict[str, Any] = {"predictions": records}
                if probability_rows is not None:
                    fast["probabilities"] = probability_rows
                return JSONResponse(fast)
            frame = pd.DataFrame(columns, columns=names)
            for n in names:  # null categorical -> missing; pandas wants object columns for that
                if types[n] != float | None:
                    frame[n] = frame[n].astype(object)
            out, probabilities, regions = await run_in_threadpool(run_model, frame, proba, intervals)
        except PolyheadError as exc:
            return JSONResponse(status_code=422, content={"detail": str(exc), "message": str(exc)})
        except Exception as exc:  # an answer, not a dropped connection; the log has the rest
            logger.exception("prediction failed")
            return JSONResponse(status_code=500, content={
                "detail": f"internal error: {type(exc).__name__}", "message": "internal error"})
        response: dict[str, Any] = {"predictions": _records(out, np)}
        if probabilities is not None:
            per_row: list[dict[str, Any]] = [{} for _ in range(n_rows)]
            for task, table in _as_frames(model, probabilities).items():
                keys = [str(c) for c in table.columns]
                for i, values in enumerate(table.to_numpy().tolist()):
                    per_row[i][task] = dict(zip(keys, values, strict=True))
            response["probabilities"] = per_row
        if regions is not None:
            response["intervals"] = _regions_json(regions, n_rows)
        # Already plain JSON types: skip FastAPI's generic encoder, which walks every value
        return JSONResponse(response)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            request_schema = PredictRequest.model_json_schema(
                ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["PredictRequest"] = request_schema
            components["PredictResponse"] = response_schema(model)
            responses = schema["paths"]["/predict"]["post"].setdefault("responses", {})
            responses["200"] = {"description": "Predictions in row order", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def response_schema(model: Any) -> dict[str, Any]:
    """JSON schema of a /predict answer: each task's prediction columns with the type its kind
    gives (a conditional task's may be null), and probabilities for kinds that have them."""
    row: dict[str, Any] = {}
    proba: dict[str, Any] = {}
    for t in model.task_states_:
        value = t.json_type()
        if t.task.given is not None:
            value = {"anyOf": [value, {"type": "null"}]}
        for column in t.output_columns:
            row[column] = {**value, "description": f"task {t.name!r} ({t.kind})"}
        if t.has_proba:
            names = t.output_columns if t.classes is None else [str(c) for c in t.classes.tolist()]
            proba[t.name] = {"type": "object", "properties": {n: {"type": "number"} for n in names}}
    schema: dict[str, Any] = {
        "title": "PredictResponse", "type": "object", "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": {
            "type": "object", "properties": row, "required": list(row)}}}}
    if proba:
        schema["properties"]["probabilities"] = {
            "type": "array", "description": "with ?proba=true",
            "items": {"type": "object", "properties": proba}}
    return schema


def _regions_json(regions: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Per row, per task: ``{"lower": .., "upper": ..}`` or ``{"set": [classes]}``."""
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for task, region in regions.items():
        if list(region.columns) == ["lower", "upper"]:
            lower, upper = region["lower"].tolist(), region["upper"].tolist()
            for i in range(n):
                rows[i][task] = {"lower": lower[i], "upper": upper[i]}
        else:
            names = [c if isinstance(c, str) else (c.item() if hasattr(c, "item") else c)
                     for c in region.columns]
            inside = region.to_numpy(dtype=bool)
            for i in range(n):
                rows[i][task] = {"set": [names[j] for j in range(len(names)) if inside[i, j]]}
    return rows


def _count_rows(payload: Any) -> int:
    """Rows in a request body, counted without validating them (0 when it has no batch)."""
    if not isinstance(payload, dict):
        return 0
    rows = payload.get("rows")
    if isinstance(rows, list):
        return len(rows)
    columns = payload.get("columns")
    if isinstance(columns, dict):
        return max((len(v) for v in columns.values() if isinstance(v, list)), default=0)
    return 0


class LimitAndLog:
    """Pure ASGI middleware: caps request bodies (by Content-Length, and by the bytes actually
    received, so chunked bodies are capped too) and writes one JSON access-log line per request
    (method, path, status, rows, latency), never the body. Measured ~2 ms cheaper per request
    than Starlette's ``BaseHTTPMiddleware``-based ``@app.middleware``."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "started": False, "refused": False}
        scope.setdefault("state", {})["rows"] = 0
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        received = 0

        async def counted_receive() -> Any:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not status["started"]:
                    # answer now, then tell the app the client is gone (an exception raised
                    # here would be turned into a 400 by FastAPI's body parsing)
                    await self._too_large(received, send)
                    status.update(code=413, started=True, refused=True)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Any) -> None:
            if status["refused"]:
                return  # the 413 already went out; drop whatever the app answers
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            if declared.isdigit() and int(declared) > limit:
                await self._too_large(int(declared), tracked_send)
            else:
                await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not status["refused"]:
                raise
        finally:
            logger.info(json.dumps({
                "method": scope.get("method"), "path": scope.get("path"), "status": status["code"],
                "rows": scope["state"].get("rows", 0),
                "latency_ms": round((time.perf_counter() - start) * 1000, 3)}))

    async def _too_large(self, size: int, send: Any) -> None:
        body = json.dumps({"detail": f"request body of {size} bytes is over the limit of "
                                     f"{self.max_body_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _has_proba(model: Any) -> bool:
    return any(t.has_proba for t in model.task_states_)


def _as_frames(model: Any, probabilities: Any) -> dict[str, Any]:
    """predict_proba's answer, whatever the model's y format was, as DataFrames per task."""
    import pandas as pd

    tasks = [t for t in model.task_states_ if t.has_proba]
    if not isinstance(probabilities, dict):
        probabilities = {tasks[0].name: probabilities}
    out = {}
    for t in tasks:
        value = probabilities.get(t.name)
        if value is None:
            continue
        if not isinstance(value, pd.DataFrame):
            columns = t.output_columns if t.classes is None else t.classes.tolist()
            value = pd.DataFrame(value, columns=columns)
        out[t.name] = value
    return out


def _non_finite(columns: dict[str, list[Any]], types: dict[str, Any]) -> "tuple[int, str, float] | None":
    """The first infinite numeric value, or one too large for float32, as (row, feature,
    value), or None (a None is a missing value)."""
    import numpy as np

    limit = float(np.finfo(np.float32).max)
    for name, values in columns.items():
        if types[name] == float | None:
            array = np.asarray(values, dtype=float)
            with np.errstate(invalid="ignore"):
                inf = np.abs(array) > limit
            if inf.any():
                row = int(np.flatnonzero(inf)[0])
                return row, name, float(array[row])
    return None


def _records(frame: Any, np: Any) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: numpy scalars to Python, NaN to null."""
    columns = [str(c) for c in frame.columns]
    rows = []
    for values in zip(*(frame[c].to_numpy().tolist() for c in frame.columns), strict=True):
        rows.append({c: (None if isinstance(v, float) and math.isnan(v) else v)
                     for c, v in zip(columns, values, strict=True)})
    return rows


def is_onnx(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def open_model(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """The model to serve and its manifest: a model directory (torch), or an ``.onnx`` export
    (onnxruntime, without importing torch)."""
    if is_onnx(path):
        from .onnx_model import OnnxModel

        onnx_model = OnnxModel(path)
        return onnx_model, onnx_model.manifest
    from ..persistence import load, read_manifest

    return load(path), read_manifest(path)


def app_from_env() -> Any:
    """App factory for uvicorn workers: model dir and settings come from the environment."""
    settings = ServeSettings(**json.loads(os.environ.get(ENV_SETTINGS, "{}")))
    return create_app(os.environ[ENV_MODEL_DIR], settings)


def run(model_dir: str, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        settings: ServeSettings | None = None, log_level: str = "info") -> None:
    """Check the model, then serve it with uvicorn (blocking)."""
    _require_fastapi()
    import uvicorn

    open_model(model_dir)  # refuse to start, with a clear error, if the model is not valid
    settings = settings or ServeSettings()
    os.environ[ENV_MODEL_DIR] = str(Path(model_dir).resolve())
    os.environ[ENV_SETTINGS] = json.dumps(settings.__dict__)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # SIGTERM: stop accepting, give requests in flight a moment, then close idle keep-alive
    # connections instead of waiting for clients to hang up (a stop takes seconds, not minutes)
    uvicorn.run("polyhead.serving.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, access_log=False, log_level=log_level,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
