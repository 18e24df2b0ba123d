"""gRPC server reflection (grpc.reflection.v1 and v1alpha) for the test
services, from the default descriptor pool: Debian has no
grpcio-reflection, so this is the same protocol written for the tests
(the messages by hand: every field is a string, bytes or a message).

add_reflection(server, services, versions=("v1", "v1alpha"),
               with_imports=True, calls=None)

with_imports: a file is sent with the files it imports (as
grpcio-reflection does); False: alone, so that the client must ask for
each import by name. calls: a list each stream appends 1 to (counted by
the tests)."""
import grpc
from google.protobuf import descriptor_pool


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _read_varint(data, i):
    n, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _fields(data):
    """(number, bytes) of a message whose fields are all length-delimited."""
    i, out = 0, []
    while i < len(data):
        tag, i = _read_varint(data, i)
        n, i = _read_varint(data, i)
        out.append((tag >> 3, data[i:i + n]))
        i += n
    return out


def add_reflection(server, services, versions=("v1", "v1alpha"), with_imports=True, calls=None):
    pool = descriptor_pool.Default()
    names = list(services) + [f"grpc.reflection.{v}.ServerReflection" for v in versions]

    def files(fd):
        out, seen, todo = [], set(), [fd]
        while todo:
            f = todo.pop()
            if f.name in seen:
                continue
            seen.add(f.name)
            out.append(f.serialized_pb)
            if with_imports:
                todo.extend(f.dependencies)
        return out

    def error(code, msg):
        return _field(7, _varint(1 << 3) + _varint(code) + _field(2, msg.encode()))

    def answer(req):
        fields = dict(_fields(req))
        orig = _field(2, req)
        try:
            if 7 in fields:
                return orig + _field(6, b"".join(_field(1, _field(1, n.encode())) for n in names))
            if 4 in fields:
                fd = pool.FindFileContainingSymbol(fields[4].decode())
                return orig + _field(4, b"".join(_field(1, f) for f in files(fd)))
            if 3 in fields:
                fd = pool.FindFileByName(fields[3].decode())
                return orig + _field(4, b"".join(_field(1, f) for f in files(fd)))
        except KeyError:
            return orig + error(5, "not found")
        return orig + error(12, "not implemented")

    def info(requests, ctx):
        if calls is not None:
            calls.append(1)
        for req in requests:
            yield answer(req)

    handlers = [grpc.method_handlers_generic_handler(f"grpc.reflection.{v}.ServerReflection", {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(info, lambda b: b, lambda b: b)})
        for v in versions]
    server.add_generic_rpc_handlers(handlers)
