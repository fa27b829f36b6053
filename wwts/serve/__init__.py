"""`wwts serve`: the pipeline as an HTTP inference service (FastAPI on uvicorn).

`config` the defaults and limits, `errors` the contract's error answers, `body` reading a
request within its limits, `records` the HTTP side of each inference record, `service`
one classify request from admission to answer, `app` the ASGI app, `server` uvicorn with
a graceful stop, `command` the command that wires them together.
"""
