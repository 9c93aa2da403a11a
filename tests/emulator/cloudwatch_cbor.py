"""CloudWatch over Smithy RPC v2 CBOR, the only protocol the AWS SDK for Rust speaks to CloudWatch.

moto 5.2.5 serves CloudWatch in its `query` and `json` protocols only. This bridge takes a request
the Rust SDK sends (POST /service/GraniteServiceVersion20100801/operation/<Operation>, header
`smithy-protocol: rpc-v2-cbor`, a CBOR body), hands it to moto as the same operation in the AWS
JSON 1.0 protocol (X-Amz-Target GraniteServiceVersion20100801.<Operation>), and answers in CBOR
shaped by the botocore model of the operation's output (timestamps as tag 1 epoch seconds).
Errors keep their `__type` and `message`, in CBOR too.
Protocol: https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html
The SigV4 Authorization header is passed on unchanged, so moto (and the IAM enforcement) see the
caller and the `monitoring` scope as they would for any CloudWatch request.
"""

import datetime
import io
import json

import botocore.session
import moto.server
from botocore.parsers import RpcV2CBORParser
from botocore.serialize import RpcV2CBORSerializer

SERVICE_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
TARGET_PREFIX = "GraniteServiceVersion20100801."

_model = None


def _service_model():
    global _model
    if _model is None:
        _model = botocore.session.get_session().get_service_model("cloudwatch")
    return _model


def _json_default(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(body):
    """A CBOR request body as Python values (empty body: no parameters)."""
    if not body:
        return {}
    parser = RpcV2CBORParser()
    return parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))


def _known(value, shape):
    """`value` with only the members `shape` models (moto may add its own fields)."""
    if shape is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: _known(v, shape.members[k]) for k, v in value.items() if k in shape.members and v is not None}
    if kind == "list" and isinstance(value, list):
        return [_known(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _known(v, shape.value) for k, v in value.items()}
    return value


def encode(value, shape):
    """`value` (a JSON-protocol answer) as CBOR shaped by `shape` (None: an error map of strings)."""
    serializer = RpcV2CBORSerializer()
    out = bytearray()
    if shape is None:
        for_errors = {k: str(v) for k, v in value.items() if v is not None}
        serializer._serialize_type_map(out, for_errors, _StringMap(), None)
    else:
        serializer._serialize_data_item(out, _known(value, shape), shape)
    return bytes(out)


class _StringMap:
    """The shape of an error body for the serializer: a map of string to string."""

    class _String:
        type_name = "string"
        serialization = {}

    type_name = "map"
    key = _String()
    value = _String()
    serialization = {}


def install():
    """Serves the CBOR protocol in front of moto (call from server.py's main, before it serves)."""
    base = moto.server.DomainDispatcherApplication

    class CborBridgeApplication(base):
        def __call__(self, environ, start_response):
            path = environ.get("PATH_INFO", "")
            if not path.startswith(SERVICE_PREFIX) or environ.get("REQUEST_METHOD") != "POST":
                return super().__call__(environ, start_response)
            operation_name = path[len(SERVICE_PREFIX):].strip("/")
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            params = decode(raw)
            body = json.dumps(params, default=_json_default).encode()
            inner = dict(environ)
            inner["PATH_INFO"] = "/"
            inner["CONTENT_TYPE"] = "application/x-amz-json-1.0"
            inner["CONTENT_LENGTH"] = str(len(body))
            inner["HTTP_X_AMZ_TARGET"] = TARGET_PREFIX + operation_name
            inner.pop("HTTP_SMITHY_PROTOCOL", None)
            inner["wsgi.input"] = io.BytesIO(body)
            captured = {}

            def capture(status, headers, exc_info=None):
                captured["status"] = status
                captured["headers"] = headers
                return lambda _data: None

            chunks = super().__call__(inner, capture)
            answer = b"".join(chunks)
            if hasattr(chunks, "close"):
                chunks.close()
            status = captured.get("status", "500 Internal Server Error")
            try:
                decoded = json.loads(answer or b"{}")
            except ValueError:
                decoded = {"__type": "InternalFailure", "message": answer.decode(errors="replace")}
            if status.startswith("2"):
                operation = _service_model().operation_model(operation_name)
                out = encode(decoded, operation.output_shape) if operation.output_shape else encode({}, None)
            else:
                error = {
                    "__type": str(decoded.get("__type", "InternalFailure")).split("#")[-1],
                    "message": decoded.get("message") or decoded.get("Message") or "",
                }
                out = encode(error, None)
            headers = [
                (k, v)
                for k, v in captured.get("headers", [])
                if k.lower() not in ("content-type", "content-length", "x-amz-crc32")
            ]
            headers += [
                ("Content-Type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("Content-Length", str(len(out))),
            ]
            start_response(status, headers)
            return [out]

    moto.server.DomainDispatcherApplication = CborBridgeApplication
