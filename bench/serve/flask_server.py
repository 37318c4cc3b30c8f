"""Flask peer for bench/serve: the machine-failure model behind the OIP v2 REST API.

    /usr/bin/python3 -m gunicorn --workers 1 --worker-class sync --bind 127.0.0.1:8002 \
        --chdir bench/serve flask_server:app
"""
from flask import Flask, jsonify, request

from oip_model import MODEL_NAME, MODEL_VERSION, InferenceError, Model

model = Model()
app = Flask(__name__)


def error(status, message):
    return jsonify(error=message), status


@app.get("/v2/health/live")
def live():
    return {"live": True}


@app.get("/v2/health/ready")
def ready():
    return {"ready": True}


@app.post("/v2/models/<model_name>/infer")
@app.post(f"/v2/models/<model_name>/versions/{MODEL_VERSION}/infer")
def infer(model_name):
    if model_name != MODEL_NAME:
        return error(404, f"unknown model '{model_name}'")
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        return error(400, "the body must be a JSON object with an 'inputs' list")
    for output in body.get("outputs") or ():
        if not isinstance(output, dict) or output.get("name") != "probability":
            return error(400, f"unknown output {output!r}")
    try:
        inputs = [(i["name"], i["datatype"], i["shape"], i["data"]) for i in body["inputs"]]
    except (KeyError, TypeError):
        return error(400, "every input needs 'name', 'datatype', 'shape' and 'data'")
    try:
        return model.infer(inputs, body.get("id"))
    except InferenceError as e:
        return error(400, str(e))
