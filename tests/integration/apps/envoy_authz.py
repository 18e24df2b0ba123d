"""An Envoy external-authorization service (envoy.service.auth.v3.Authorization/Check)
for ext_auth api: grpc tests, on python3-grpcio and python3-protobuf alone:
the messages are declared here field by field (their numbers as Envoy's
protos have them), so the official protobuf library does the wire format.

Decides by the authorization header in the CheckRequest:
  Bearer good-USER   -> OK: x-user: USER, x-tenant: t1, x-secret (not to pass on) upstream;
                        authorization removed; set-cookie and x-internal for the client
  Bearer deny        -> PERMISSION_DENIED, denied_response 401 + www-authenticate, x-other
  Bearer plain       -> PERMISSION_DENIED, no denied_response
  Bearer unavailable -> the call fails with UNAVAILABLE
  Bearer garbage     -> an answer that is not a CheckResponse
  Bearer evil        -> OK with a header value holding CR LF
  anything else      -> UNAUTHENTICATED
"""
import threading
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

F = descriptor_pb2.FieldDescriptorProto
STR, BYTES, I64, U32, I32, BOOL, MSG = (F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_INT32,
                                        F.TYPE_BOOL, F.TYPE_MESSAGE)
PKG = "envoy.service.auth.v3"

# message name -> [(field, number, type, repeated, message type)]
MESSAGES = {
    "SocketAddress": [("address", 2, STR), ("port_value", 3, U32)],
    "Address": [("socket_address", 1, MSG, False, "SocketAddress")],
    "Peer": [("address", 1, MSG, False, "Address"), ("service", 2, STR), ("principal", 4, STR),
             ("certificate", 5, STR)],
    "Timestamp": [("seconds", 1, I64), ("nanos", 2, I32)],
    "HttpRequest": [("id", 1, STR), ("method", 2, STR), ("headers", 3, MSG, True, "HttpRequest.HeadersEntry"), ("path", 4, STR),
                    ("host", 5, STR), ("scheme", 6, STR), ("query", 7, STR), ("fragment", 8, STR),
                    ("size", 9, I64), ("protocol", 10, STR), ("body", 11, STR), ("raw_body", 12, BYTES)],
    "Request": [("time", 1, MSG, False, "Timestamp"), ("http", 2, MSG, False, "HttpRequest")],
    "AttributeContext": [("source", 1, MSG, False, "Peer"), ("destination", 2, MSG, False, "Peer"),
                         ("request", 4, MSG, False, "Request")],
    "CheckRequest": [("attributes", 1, MSG, False, "AttributeContext")],
    "Status": [("code", 1, I32), ("message", 2, STR)],
    "HttpStatus": [("code", 1, I32)],
    "HeaderValue": [("key", 1, STR), ("value", 2, STR), ("raw_value", 3, BYTES)],
    "HeaderValueOption": [("header", 1, MSG, False, "HeaderValue")],
    "DeniedHttpResponse": [("status", 1, MSG, False, "HttpStatus"), ("headers", 2, MSG, True, "HeaderValueOption"),
                           ("body", 3, STR)],
    "OkHttpResponse": [("headers", 2, MSG, True, "HeaderValueOption"), ("headers_to_remove", 5, STR, True),
                       ("response_headers_to_add", 6, MSG, True, "HeaderValueOption")],
    "CheckResponse": [("status", 1, MSG, False, "Status"), ("denied_response", 2, MSG, False, "DeniedHttpResponse"),
                      ("ok_response", 3, MSG, False, "OkHttpResponse")],
}


def _classes():
    fd = descriptor_pb2.FileDescriptorProto(name="tollgate_test_authz.proto", package=PKG, syntax="proto3")
    for name, fields in MESSAGES.items():
        m = fd.message_type.add(name=name)
        if name == "HttpRequest":  # map<string, string> headers = 3
            e = m.nested_type.add(name="HeadersEntry")
            e.options.map_entry = True
            e.field.add(name="key", number=1, type=STR, label=F.LABEL_OPTIONAL)
            e.field.add(name="value", number=2, type=STR, label=F.LABEL_OPTIONAL)
        for f in fields:
            fname, num, typ = f[:3]
            rep = len(f) > 3 and f[3]
            fld = m.field.add(name=fname, number=num, type=typ,
                              label=F.LABEL_REPEATED if rep else F.LABEL_OPTIONAL)
            if typ == MSG:
                fld.type_name = f".{PKG}.{f[4]}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    out = {}
    for name in MESSAGES:
        desc = pool.FindMessageTypeByName(f"{PKG}.{name}")
        out[name] = (message_factory.GetMessageClass(desc) if hasattr(message_factory, "GetMessageClass")
                     else message_factory.MessageFactory(pool).GetPrototype(desc))
    return out


M = _classes()


def _hvo(k, v):
    return M["HeaderValueOption"](header=M["HeaderValue"](key=k, value=v))


class Authz:
    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0
        self.last = None

    def reset(self):
        with self.lock:
            self.n, self.last = 0, None

    def check(self, req, context):
        with self.lock:
            self.n += 1
            self.last = json_format.MessageToDict(req, preserving_proto_field_name=True)
        http = req.attributes.request.http
        az = http.headers.get("authorization", "")
        tok = az[7:] if az.lower().startswith("bearer ") else ""
        R = M["CheckResponse"]
        if tok.startswith("good-"):
            ok = M["OkHttpResponse"](
                headers=[_hvo("X-User", tok[5:]), _hvo("x-tenant", "t1"), _hvo("x-secret", "do-not-forward")],
                headers_to_remove=["authorization"],
                response_headers_to_add=[_hvo("set-cookie", "s=1; Path=/"), _hvo("x-internal", "no")])
            return R(status=M["Status"](code=0), ok_response=ok)
        if tok == "body":  # allowed only for the body "hello"
            code = 0 if http.body == "hello" else 7
            return R(status=M["Status"](code=code))
        if tok == "deny":
            d = M["DeniedHttpResponse"](status=M["HttpStatus"](code=401), body="go away",
                                        headers=[_hvo("www-authenticate", 'Bearer realm="grpc"'),
                                                 _hvo("x-other", "not-for-the-client")])
            return R(status=M["Status"](code=7), denied_response=d)
        if tok == "plain":
            return R(status=M["Status"](code=7))
        if tok == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "down for a moment")
        if tok == "garbage":
            return b"\x0b\x00"  # a group: no CheckResponse
        if tok == "evil":
            ok = M["OkHttpResponse"](headers=[_hvo("x-user", "eve\r\nx-injected: 1")])
            return R(status=M["Status"](code=0), ok_response=ok)
        return R(status=M["Status"](code=16))


def serve(port):
    """Starts the service on 127.0.0.1:port; returns (server, Authz)."""
    authz = Authz()
    handler = grpc.method_handlers_generic_handler(PKG + ".Authorization", {
        "Check": grpc.unary_unary_rpc_method_handler(
            authz.check, request_deserializer=M["CheckRequest"].FromString,
            response_serializer=lambda r: r if isinstance(r, bytes) else r.SerializeToString()),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, authz
