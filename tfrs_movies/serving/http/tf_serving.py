"""TensorFlow Serving's REST dialect over any loaded SavedModel, so existing TF Serving clients work.

``predict(saved_model, body) -> dict`` answers ``POST /v1/models/{name}:predict`` bodies as
TensorFlow Serving does (https://www.tensorflow.org/tfx/serving/api_rest):

- ``{"signature_name": S, "instances": [...]}`` (row format): each instance is one row of every input
  (an object of input name -> value, or the bare value when the signature has one input); the rows
  are stacked into batch-first tensors. The answer is ``{"predictions": [...]}``: one value per row
  when the signature has one output, else one object of output name -> value per row.
- ``{"signature_name": S, "inputs": {...}}`` (columnar format): each input's whole tensor (a bare
  value when the signature has one input), scalars included (the top-K signatures' ``k``). The
  answer is ``{"outputs": ...}``: the tensor itself for one output, else an object of name -> tensor.

``signature_name`` defaults to ``serving_default``. Strings are JSON strings (``{"b64": ...}`` for
bytes that are not UTF-8, both ways); floats keep float32's value; NaN and infinities are written
``NaN``, ``Infinity`` and ``-Infinity`` as TF Serving writes them. A malformed request raises
:class:`DialectError` with TF Serving's status: 400 (invalid argument) or 404 (no such signature).
``status(name)`` and ``metadata(name, saved_model)`` answer ``GET /v1/models/{name}`` and
``GET /v1/models/{name}/metadata``.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

DEFAULT_SIGNATURE = "serving_default"
MODEL_VERSION = "1"  # an export's SavedModels are served as version 1, as copied under models/<name>/1/


# TensorFlow error codes -> the HTTP status TF Serving answers them with (others: 500).
HTTP_STATUS = {
    tf.errors.INVALID_ARGUMENT: 400, tf.errors.FAILED_PRECONDITION: 400, tf.errors.OUT_OF_RANGE: 400,
    tf.errors.NOT_FOUND: 404, tf.errors.ALREADY_EXISTS: 409, tf.errors.UNAUTHENTICATED: 401,
    tf.errors.PERMISSION_DENIED: 403, tf.errors.RESOURCE_EXHAUSTED: 429, tf.errors.UNIMPLEMENTED: 501,
    tf.errors.UNAVAILABLE: 503, tf.errors.DEADLINE_EXCEEDED: 504,
}  # fmt: skip


class DialectError(Exception):
    """A request TF Serving would refuse; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _signature(saved_model, body: dict[str, Any]):
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise DialectError("'signature_name' must be a string")
    if name not in saved_model.signatures:
        raise DialectError(f'Serving signature name: "{name}" not found in signature def', 404)
    return saved_model.signatures[name]


def _input_specs(signature) -> dict[str, tf.TensorSpec]:
    return dict(signature.structured_input_signature[1])


def _decode(value: Any, dtype: tf.DType) -> Any:
    """JSON value -> nested lists ready for numpy: ``{"b64": ...}`` decoded to bytes."""
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            return base64.b64decode(value["b64"])
        raise DialectError('an object in a tensor must be {"b64": <base64 string>}')
    if isinstance(value, list):
        return [_decode(v, dtype) for v in value]
    return value


def _tensor(name: str, value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    """One input's JSON value as a tensor of its spec's dtype and rank, else a DialectError naming it."""
    value = _decode(value, spec.dtype)
    try:
        if spec.dtype == tf.string:
            array = np.array(value, dtype=object)
            if array.dtype != object or any(not isinstance(v, (str, bytes)) for v in array.reshape(-1)):
                raise ValueError("expects strings")
            tensor = tf.constant(array.tolist() if array.ndim else array.item(), tf.string)
        else:
            array = np.array(value)
            if array.dtype == object or array.dtype.kind not in "biuf":
                raise ValueError(f"expects numbers of type {spec.dtype.name}")
            if spec.dtype.is_integer and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
                raise ValueError(f"expects integers ({spec.dtype.name})")
            tensor = tf.constant(array.astype(spec.dtype.as_numpy_dtype))
    except (ValueError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DialectError(f"input '{name}': {first}") from None
    if spec.shape.rank is not None and tensor.shape.rank != spec.shape.rank:
        raise DialectError(
            f"input '{name}' has rank {tensor.shape.rank}; the signature expects rank {spec.shape.rank} "
            f"(shape {spec.shape.as_list()})"
        )
    if not spec.shape.is_compatible_with(tensor.shape):
        raise DialectError(f"input '{name}' has shape {tensor.shape.as_list()}, not {spec.shape.as_list()}")
    return tensor


def _rows_to_columns(instances: list, specs: dict[str, tf.TensorSpec]) -> dict[str, list]:
    """Row format -> one stacked list per input."""
    if not instances:
        raise DialectError("'instances' must hold at least one instance")
    names = sorted(specs)
    objects = [isinstance(row, dict) and set(row) != {"b64"} for row in instances]
    if len(names) == 1 and not any(objects):
        return {names[0]: instances}
    if not all(objects):
        raise DialectError(
            "each instance must be an object of named inputs (the signature has several inputs: "
            f"{', '.join(names)})"
        )
    scalars = [n for n in names if specs[n].shape.rank == 0]
    if scalars:
        raise DialectError(
            f"input '{scalars[0]}' is a scalar, which the row format ('instances') cannot carry: "
            "send it with the columnar format ('inputs')"
        )
    columns: dict[str, list] = {name: [] for name in names}
    for i, row in enumerate(instances):
        if set(row) != set(names):
            missing = sorted(set(names) - set(row)) or sorted(set(row) - set(names))
            raise DialectError(f"instance {i}: named input '{missing[0]}' missing or not in the signature")
        for name in names:
            columns[name].append(row[name])
    return columns


def _json(array: np.ndarray) -> Any:
    """A tensor's value as JSON: nested lists, strings decoded (base64 objects when not UTF-8)."""
    if array.dtype == object:

        def text(value: bytes) -> Any:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(value).decode("ascii")}

        return np.vectorize(text, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


# Lines of a TensorFlow error message that say where, not what (Python's own stack among them).
_WHERE = ("Graph execution error", "Detected at node", "<stack traces", "File ", "[[", "Traceback")


def _op_message(err: tf.errors.OpError) -> str:
    """The line of a TensorFlow error that says what failed (never a stack)."""
    lines = [line.strip() for line in err.message.splitlines() if line.strip()]
    what = [line for line in lines if not line.startswith(_WHERE)]
    return (what or [type(err).__name__])[0][:500]


def predict(saved_model, body: Any) -> dict[str, Any]:
    """Answer one ``:predict`` body (module docstring) with ``saved_model``'s signature."""
    if not isinstance(body, dict):
        raise DialectError("the request body must be a JSON object")
    signature = _signature(saved_model, body)
    specs = _input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise DialectError('the request must hold exactly one of "instances" and "inputs"')
    rows = "instances" in body
    if rows:
        if not isinstance(body["instances"], list):
            raise DialectError("'instances' must be a list")
        values = _rows_to_columns(body["instances"], specs)
    else:
        given = body["inputs"]
        if isinstance(given, dict) and not (len(specs) == 1 and set(given) == {"b64"}):
            values = given
        elif len(specs) == 1:
            values = {next(iter(specs)): given}
        else:
            raise DialectError(f"'inputs' must be an object of named inputs: {', '.join(sorted(specs))}")
    unknown = sorted(set(values) - set(specs))
    missing = sorted(set(specs) - set(values))
    if unknown or missing:
        what = (
            f"input '{unknown[0]}' is not in the signature" if unknown else f"input '{missing[0]}' is missing"
        )
        raise DialectError(f"{what}; it takes {', '.join(sorted(specs))}")
    tensors = {name: _tensor(name, values[name], specs[name]) for name in specs}
    try:
        outputs = signature(**tensors)
    except tf.errors.OpError as err:  # TF Serving answers with the op's status and message
        raise DialectError(_op_message(err), HTTP_STATUS.get(err.error_code, 500)) from None
    except (ValueError, TypeError) as err:
        message = str(err)
        first = message.strip().splitlines()[0] if message.strip() else type(err).__name__
        raise DialectError(first) from None
    arrays = {name: np.asarray(tensor.numpy()) for name, tensor in outputs.items()}
    if not rows:
        if len(arrays) == 1:
            return {"outputs": _json(next(iter(arrays.values())))}
        return {"outputs": {name: _json(a) for name, a in arrays.items()}}
    batch = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(batch) != 1 or None in batch:
        raise DialectError("the outputs do not share a batch size, which the row format needs: use 'inputs'")
    if len(arrays) == 1:
        return {"predictions": _json(next(iter(arrays.values())))}
    columns = {name: _json(a) for name, a in arrays.items()}
    return {"predictions": [{name: columns[name][i] for name in columns} for i in range(batch.pop())]}


def status() -> dict[str, Any]:
    """``GET /v1/models/{name}``: the one version, available."""
    ok = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": MODEL_VERSION, "state": "AVAILABLE", "status": ok}]}


def _tensor_info(name: str, dtype: tf.DType, shape: tf.TensorShape) -> dict[str, Any]:
    unknown = shape.rank is None
    dims = [] if unknown else [{"size": str(-1 if d is None else d), "name": ""} for d in shape.as_list()]
    return {
        "dtype": types_pb2.DataType.Name(dtype.as_datatype_enum),
        "tensor_shape": {"dim": dims, "unknown_rank": unknown},
        "name": name,
    }


def metadata(name: str, saved_model) -> dict[str, Any]:
    """``GET /v1/models/{name}/metadata``: every signature's inputs and outputs, as TF Serving lists them."""
    defs = {}
    for key, signature in saved_model.signatures.items():
        inputs = {
            arg: _tensor_info(f"{key}_{arg}:0", spec.dtype, spec.shape)
            for arg, spec in _input_specs(signature).items()
        }
        outputs = {
            out: _tensor_info(f"StatefulPartitionedCall:{i}", spec.dtype, spec.shape)
            for i, (out, spec) in enumerate(sorted(signature.structured_outputs.items()))
        }
        defs[key] = {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}
    return {
        "model_spec": {"name": name, "signature_name": "", "version": MODEL_VERSION},
        "metadata": {"signature_def": {"signature_def": defs}},
    }
