"""FastAPI peer for bench/serve: the machine-failure model behind the OIP v2 REST API.

    /usr/bin/python3 -m uvicorn --app-dir bench/serve --host 127.0.0.1 --port 8001 \
        --workers 1 --no-access-log fastapi_server:app
"""
from typing import Any, Dict, List, Optional, Union

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from oip_model import MODEL_NAME, MODEL_VERSION, InferenceError, Model


class InferInput(BaseModel):
    name: str
    datatype: str
    shape: List[int]
    data: list  # flat or nested row-major numbers; the model checks them
    parameters: Optional[Dict[str, Any]] = None


class RequestedOutput(BaseModel):
    name: str
    parameters: Optional[Dict[str, Any]] = None


class InferRequest(BaseModel):
    id: Optional[Union[str, int]] = None
    inputs: List[InferInput]
    outputs: Optional[List[RequestedOutput]] = None
    parameters: Optional[Dict[str, Any]] = None


model = Model()
app = FastAPI(title="machine-failure (FastAPI peer)")


def error(status, message):
    return JSONResponse(status_code=status, content={"error": message})


@app.get("/v2/health/live")
async def live():
    return {"live": True}


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


@app.post("/v2/models/{model_name}/infer")
async def infer(model_name: str, request: InferRequest):
    if model_name != MODEL_NAME:
        return error(404, f"unknown model '{model_name}'")
    for output in request.outputs or ():
        if output.name != "probability":
            return error(400, f"unknown output '{output.name}'")
    try:
        # The prediction takes tens of microseconds: running it on the event loop is cheaper
        # than handing it to a worker thread and back.
        return model.infer([(i.name, i.datatype, i.shape, i.data) for i in request.inputs],
                           request.id)
    except InferenceError as e:
        return error(400, str(e))


@app.post(f"/v2/models/{{model_name}}/versions/{MODEL_VERSION}/infer")
async def infer_version(model_name: str, request: InferRequest):
    return await infer(model_name, request)
