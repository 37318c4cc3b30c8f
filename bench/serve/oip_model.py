"""The model and the Open Inference Protocol (OIP) handling shared by the Python peer servers.

bench/serve/fastapi_server.py and bench/serve/flask_server.py serve the same XGBoost model as
`edgeloop serve` (examples/models/machine-failure/1/model.json) with the same JSON in and out:

    POST /v2/models/machine-failure/infer
    {"inputs":[{"name":"features","datatype":"FP32","shape":[N,20],"data":[...]}]}
    -> {"model_name":"machine-failure","model_version":"1",
        "outputs":[{"name":"probability","datatype":"FP32","shape":[N],"data":[...]}]}

The model file can be overridden with the EDGELOOP_BENCH_MODEL environment variable.
Run with Debian's interpreter, /usr/bin/python3 (python3-xgboost, python3-numpy).
"""
import importlib.util
import math
import os
import sys

# xgboost 1.7 checks on every predict call whether the input is a pandas DataFrame by running
# `import pandas`. When pandas is not installed (as on the benchmark machine) Python does not
# remember the failure and searches sys.path again on every call, about 200 us per prediction.
# Recording the absence once makes that check cost what it costs with pandas installed (a
# sys.modules lookup); nothing else changes.
if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
    sys.modules["pandas"] = None

import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402

MODEL_NAME = "machine-failure"
MODEL_VERSION = "1"
INPUT_NAME = "features"
INPUT_DATATYPE = "FP32"
OUTPUT_NAME = "probability"

_DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                              "examples", "models", MODEL_NAME, MODEL_VERSION, "model.json")


class InferenceError(ValueError):
    """A request the model cannot answer; the server replies 400 with the message."""


class Model:
    """The machine-failure classifier: 20 FP32 features in, one failure probability out."""

    def __init__(self, path=None):
        path = path or os.environ.get("EDGELOOP_BENCH_MODEL") or _DEFAULT_MODEL
        self.booster = xgb.Booster(model_file=path)
        # One thread, like one edgeloop I/O thread: the server is pinned to one CPU.
        self.booster.set_param({"nthread": 1})
        self.num_features = self.booster.num_features()

    def predict(self, name, datatype, shape, data):
        """Probabilities (a list of floats) for the rows of one OIP input tensor."""
        if name != INPUT_NAME:
            raise InferenceError(f"unknown input '{name}', expected '{INPUT_NAME}'")
        if datatype != INPUT_DATATYPE:
            raise InferenceError(f"input '{name}' has datatype {datatype}, expected FP32")
        if (not isinstance(shape, (list, tuple)) or len(shape) != 2
                or not all(isinstance(d, int) for d in shape)
                or shape[1] != self.num_features or shape[0] < 0):
            raise InferenceError(f"input '{name}' has shape {shape}, expected [-1, "
                                 f"{self.num_features}]")
        try:
            # Flat or nested row-major data; null becomes NaN (missing).
            x = np.array(data, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InferenceError(f"input '{name}': data is not a list of numbers: {e}")
        if x.size != math.prod(shape):
            raise InferenceError(f"input '{name}' has {x.size} elements, shape {shape} needs "
                                 f"{math.prod(shape)}")
        if x.size == 0:
            return []
        return self.booster.inplace_predict(x.reshape(shape)).tolist()

    def infer(self, inputs, request_id=None):
        """The OIP response (a dict) for a list of (name, datatype, shape, data) inputs."""
        if len(inputs) != 1:
            raise InferenceError(f"expected 1 input, got {len(inputs)}")
        probabilities = self.predict(*inputs[0])
        response = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = [{"name": OUTPUT_NAME, "datatype": "FP32",
                                "shape": [len(probabilities)], "data": probabilities}]
        return response
