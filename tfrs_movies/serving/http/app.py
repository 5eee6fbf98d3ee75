"""The HTTP API over a loaded export (FastAPI): ``create_app(exported, settings) -> FastAPI``.

Endpoints (JSON; FastAPI's OpenAPI page is at ``/docs``):

- ``GET /health`` -> ``{"status": "ok", "model", "index", "indexes", "movies", "users", "ranking"}``
- ``GET /recommend?user_id=1&k=10[&index=scann|brute_force][&include_seen=false][&candidates=100]
  [&explain=3]`` -> ``{"user_id", "items": [{"movie_id", "title", "year", "score", "retrieval_score",
  "rating", "stage", "because"}...], "cold_start", "stages", "index", "note"}``
- ``POST /recommend``: ``{"user_ids": [...], "k": 10, ...}`` -> ``{"results": [<one answer per user>]}``;
  ``{"features": {"age": 25, "gender": "F", ...}}`` (a new user through the query tower) or
  ``{"watched": [50, 181]}`` (the watched movies folded in) -> one answer.
- ``GET /similar?movie_id=50&k=10``, ``GET /pair?user_a=1&user_b=2&k=10&aggregation=average``,
  ``GET /movies?query=star`` (title search), ``GET /user?user_id=1`` (the movies a user rated in
  train, those the model predicts highest first), ``GET /features`` (what a cold start takes).
- TensorFlow Serving's REST dialect for every SavedModel of the export (:mod:`.tf_serving`):
  ``POST /v1/models/{name}:predict``, ``GET /v1/models/{name}``, ``GET /v1/models/{name}/metadata``
  (also under ``/versions/1``).
- ``GET /``: the page (``static/index.html``).

A bad request is HTTP 4xx with ``{"error": "..."}`` naming the parameter; an unknown user is a
cold-start answer (``cold_start: true``), not an error; the server never returns a traceback (500 says
only the exception's type; the log has the rest). :class:`Guard` logs one line per request, checks the
optional bearer token (every path but ``/health`` and the page) and caps request bodies.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import time
from dataclasses import asdict
from importlib import resources
from typing import Any

import anyio.to_thread
import numpy as np
import pandas as pd
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

import tfrs_movies
from tfrs_movies import schema as S
from tfrs_movies.serving.http import tf_serving
from tfrs_movies.serving.http.batching import MicroBatcher, predict_many, predictor, search_many, searcher
from tfrs_movies.serving.http.settings import ServerSettings
from tfrs_movies.serving.load import AGGREGATIONS, INDEXES, Exported, Recommendations, ServingError

log = logging.getLogger("tfrs_movies.serve")

# Paths answered without the bearer token: the liveness check and the page (which holds no data).
OPEN_PATHS = frozenset({"/health", "/"})
# The columns every recommended item has (null where the answer has no such column).
ITEM_FIELDS = ("movie_id", "title", "year", "score", "retrieval_score", "rating", "stage", "because")


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars -> Python, NaN / inf / pandas NA -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _items(frame: pd.DataFrame, because: dict[int, list[dict]] | None = None) -> list[dict[str, Any]]:
    """A result frame as items: ITEM_FIELDS first, then any other column (score_<user>, probability)."""
    columns = {name: [_plain(v) for v in frame[name].tolist()] for name in frame.columns}
    rows = []
    for i in range(len(frame)):
        row = {name: columns[name][i] if name in columns else None for name in ITEM_FIELDS}
        row.update({name: values[i] for name, values in columns.items() if name not in row})
        if because is not None:
            row["because"] = because.get(int(row[S.MOVIE_ID]), [])
        rows.append(row)
    return rows


def _stages(result: Recommendations) -> list[str]:
    """The stages that made the answer, in order: e.g. ["retrieval", "ranking"], ["popularity"]."""
    frame = result.frame
    stages = ["retrieval"] if "retrieval_score" in frame.columns else []
    for stage in frame["stage"].unique().tolist() if len(frame) else []:
        if stage not in stages:
            stages.append(stage)
    return stages


def _answer(result: Recommendations, user_id: Any, index: str | None, because=None) -> dict[str, Any]:
    return {
        "user_id": None if user_id is None else str(user_id),
        "items": _items(result.frame, because),
        "cold_start": result.cold_start,
        "stages": _stages(result),
        "index": index,
        "note": result.note,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class TFServingResponse(JSONResponse):
    """JSON as TF Serving writes it: NaN and infinities as NaN / Infinity / -Infinity."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("utf-8")


class RecommendBody(BaseModel):
    """``POST /recommend``: ``user_ids`` (a batch), or one ``user_id`` (optional) with ``features`` or
    ``watched`` for a user the model never saw."""

    model_config = ConfigDict(extra="forbid")
    user_ids: list[Any] | None = None
    user_id: Any = None
    features: dict[str, Any] | None = None
    watched: list[Any] | None = None
    k: int = 10
    index: str | None = None
    include_seen: bool = False
    candidates: int | None = None
    explain: int | None = None


class Guard:
    """ASGI middleware: one log line per request, the bearer token, and the request body cap."""

    def __init__(self, app, token: str | None, max_body_bytes: int):
        self.app = app
        self.token = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_status)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + (f"?{query}" if query else "")
            client = scope.get("client") or ("-", 0)
            ms = 1e3 * (time.perf_counter() - start)
            log.info("%s %s %s %d %.1fms", client[0], scope["method"], path, status[0], ms)

    async def _guarded(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        if self.token and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.token):
                what = "wrong" if given else "missing"
                response = _error(
                    401, f"{what} bearer token: send the header 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                return await response(scope, receive, send)
        too_large = _error(413, f"request body over {self.max_body_bytes} bytes")
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body_bytes:
                return await too_large(scope, receive, send)
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        # A body without a length (chunked): read it under the cap, then hand it on.
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await too_large(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _page() -> str:
    return resources.files("tfrs_movies.serving.http").joinpath("static/index.html").read_text("utf-8")


def install_batching(exported: Exported, settings: ServerSettings) -> dict[str, MicroBatcher]:
    """Micro-batch ``exported``'s index searches and (with a ranking model) its ranking stage."""
    if settings.micro_batch <= 1:
        return {}
    wait = settings.max_wait_ms / 1e3
    batchers = {"index": MicroBatcher(search_many(exported.search_users), settings.micro_batch, wait)}
    exported.user_search = searcher(batchers["index"])
    if exported.has_ranking:
        batchers["ranking"] = MicroBatcher(predict_many(exported.predict_many), settings.micro_batch, wait)
        exported.user_predict = predictor(batchers["ranking"])
    return batchers


def warm_up(exported: Exported) -> None:
    """Load every SavedModel and answer once per index, so the first requests wait for nothing."""
    for name in exported.saved_model_names:
        exported.saved_model(name)
    if len(exported.users):
        for index in exported.indexes:
            exported.recommend(int(exported.users[0]), 1, index)


def create_app(exported: Exported, settings: ServerSettings | None = None) -> FastAPI:
    """The API over ``exported`` (module docstring); micro-batching is installed on ``exported``."""
    settings = settings or ServerSettings()
    batchers = install_batching(exported, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        yield
        for batcher in batchers.values():
            batcher.close()

    app = FastAPI(
        title="tfrs_movies", description="Movie recommendations from a tfrs_movies export.",
        version=tfrs_movies.__version__, lifespan=lifespan,
    )  # fmt: skip
    app.state.exported, app.state.batchers = exported, batchers
    page = _page()
    titles = exported.movies[S.TITLE].fillna("").astype(str).str.lower()

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, err: ServingError):
        return _error(400, str(err))

    @app.exception_handler(tf_serving.DialectError)
    async def _dialect_error(request: Request, err: tf_serving.DialectError):
        return _error(err.status, str(err))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
        return _error(400, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        message = f"no such endpoint: {request.url.path}" if err.status_code == 404 else str(err.detail)
        return _error(err.status_code, message)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, err: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error ({type(err).__name__}); the server log has the details")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    def health() -> JSONResponse:
        return JSONResponse({
            "status": "ok", "model": exported.manifest.get("model"), "index": exported.indexes[0],
            "indexes": exported.indexes, "movies": int(len(exported.catalogue)),
            "users": int(len(exported.users)),
            "ranking": exported.has_ranking, "k_max": exported.k_max,
            "explain": "explain" in exported.saved_model_names,
            "micro_batching": {name: asdict(batcher.stats) for name, batcher in batchers.items()},
        })  # fmt: skip

    def _recommend_one(user_id, k, index, include_seen, candidates, explain, features=None) -> dict:
        result = exported.recommend(user_id, k, index, include_seen, candidates, features=features)
        because = None
        if explain is not None and not result.cold_start:
            because = exported.because_you_watched(user_id, result.frame[S.MOVIE_ID].to_numpy(), explain)
        return _answer(result, user_id, index or exported.indexes[0], because)

    @app.get("/recommend")
    def recommend(
        user_id: str, k: int = 10, index: str | None = None, include_seen: bool = False,
        candidates: int | None = None, explain: int | None = None,
    ) -> JSONResponse:  # fmt: skip
        return JSONResponse(_recommend_one(user_id, k, index, include_seen, candidates, explain))

    @app.post("/recommend")
    def recommend_post(body: RecommendBody = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's idiom
        given = [name for name in ("user_ids", "features", "watched") if getattr(body, name) is not None]
        if len(given) > 1 or (body.user_ids is not None and body.user_id is not None):
            raise ServingError(f"give one of user_ids, features or watched, not {' and '.join(given)}")
        common = (body.k, body.index, body.include_seen, body.candidates)
        if body.user_ids is not None:
            if not 1 <= len(body.user_ids) <= settings.max_batch_users:
                raise ServingError(
                    f"user_ids must hold between 1 and {settings.max_batch_users} ids, "
                    f"got {len(body.user_ids)}"
                )
            results = [_recommend_one(u, *common, body.explain) for u in body.user_ids]
            return JSONResponse({"results": results})
        if body.watched is not None:
            if not 1 <= len(body.watched) <= settings.max_batch_users:
                raise ServingError(f"watched must hold between 1 and {settings.max_batch_users} movie ids")
            result = exported.recommend_watched(body.watched, body.k, body.index)
            return JSONResponse(_answer(result, body.user_id, body.index or exported.indexes[0]))
        if body.features is None and body.user_id is None:
            raise ServingError("the body needs user_ids, user_id, features or watched")
        user = body.user_id if body.user_id is not None else exported.new_user_id
        answer = _recommend_one(user, *common, body.explain, features=body.features)
        if body.user_id is None:
            answer["user_id"] = None
        return JSONResponse(answer)

    @app.get("/similar")
    def similar(movie_id: str, k: int = 10) -> JSONResponse:
        result = exported.similar(movie_id, k)
        items = _items(result.frame)
        return JSONResponse({"movie_id": str(movie_id), "items": items, "stages": _stages(result)})

    @app.get("/pair")
    def pair(
        user_a: str, user_b: str, k: int = 10, aggregation: str = "average", index: str | None = None,
        candidates: int | None = None,
    ) -> JSONResponse:  # fmt: skip
        if aggregation not in AGGREGATIONS:
            raise ServingError(f"aggregation must be {' or '.join(AGGREGATIONS)}, got {aggregation!r}")
        result = exported.recommend_pair(user_a, user_b, k, aggregation, index, candidates)
        answer = _answer(result, None, index or exported.indexes[0])
        answer.pop("user_id")
        return JSONResponse({"user_a": user_a, "user_b": user_b, "aggregation": aggregation, **answer})

    @app.get("/movies")
    def movies(
        query: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=200),
        movie_id: str | None = None,
    ) -> JSONResponse:  # fmt: skip
        """Movies whose title holds every word of ``query`` (or the one ``movie_id``), catalogue order."""
        words = query.lower().split()
        mask = np.ones(len(titles), bool)
        if movie_id is not None:
            mask = exported.catalogue == exported.parse_movie_id(movie_id)
        for word in words:
            mask &= titles.str.contains(word, regex=False).to_numpy()
        found = exported.movies[S.MOVIE_ID].to_numpy()[mask][:limit]
        items = _items(exported.movie_frame(found, np.zeros(len(found)), "title"))
        items = [{name: item[name] for name in (S.MOVIE_ID, S.TITLE, S.YEAR)} for item in items]
        return JSONResponse({"query": query, "count": int(mask.sum()), "items": items})

    @app.get("/user")
    def user(user_id: str, k: int = Query(10, ge=1, le=1000)) -> JSONResponse:
        seen = exported.seen_movies(user_id)
        order_by = "predicted " + exported.ranking_output if exported.has_ranking else "popularity"
        if exported.has_ranking and len(seen):
            scores = exported.predict(user_id, seen)
        else:
            scores = exported.popularity[exported.catalogue.searchsorted(seen)].astype(np.float64)
        top = np.argsort(-scores, kind="stable")[:k]
        frame = exported.movie_frame(seen[top], scores[top], order_by)
        return JSONResponse({
            "user_id": str(user_id), "known": bool(exported.is_known(user_id)), "watched": int(len(seen)),
            "order_by": order_by, "items": _items(frame),
        })  # fmt: skip

    @app.get("/features")
    def features() -> JSONResponse:
        inputs = exported.manifest.get("user_feature_inputs", {})
        known = {name: spec.get("values") for name, spec in inputs.items() if name != S.USER_ID}
        return JSONResponse({"user_features": exported.manifest.get("user_features", []), "inputs": known})

    # ----- TensorFlow Serving's REST dialect ----------------------------------------------------------
    def _saved_model(name: str):
        if name not in exported.saved_model_names:
            raise tf_serving.DialectError(f"Servable not found for request: Latest({name})", 404)
        return exported.saved_model(name)

    def _version(version: str) -> None:
        if version != tf_serving.MODEL_VERSION:
            raise tf_serving.DialectError(f"Servable not found for request: Specific(model, {version})", 404)

    async def _json_body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise tf_serving.DialectError(f"JSON Parse error: {err}") from None

    @app.post("/v1/models/{name}:predict")
    async def tfs_predict(name: str, request: Request) -> Response:
        body = await _json_body(request)
        return TFServingResponse(tf_serving.predict(_saved_model(name), body))

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def tfs_predict_version(name: str, version: str, request: Request) -> Response:
        _version(version)
        body = await _json_body(request)
        return TFServingResponse(tf_serving.predict(_saved_model(name), body))

    @app.get("/v1/models/{name}")
    def tfs_status(name: str) -> Response:
        _saved_model(name)
        return TFServingResponse(tf_serving.status())

    @app.get("/v1/models/{name}/versions/{version}")
    def tfs_status_version(name: str, version: str) -> Response:
        _version(version)
        _saved_model(name)
        return TFServingResponse(tf_serving.status())

    @app.get("/v1/models/{name}/metadata")
    def tfs_metadata(name: str) -> Response:
        return TFServingResponse(tf_serving.metadata(name, _saved_model(name)))

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    def tfs_metadata_version(name: str, version: str) -> Response:
        _version(version)
        return TFServingResponse(tf_serving.metadata(name, _saved_model(name)))

    app.add_middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes)
    return app


__all__ = ["INDEXES", "ServerSettings", "create_app", "warm_up"]
