"""grpc.health.v1.Health answered by tollgate (route grpc_health: true),
called with python3-grpcio as Kubernetes probes and gRPC clients call it:

- Check: "" is the route's own cluster, a service is the cluster its calls
  are routed to — SERVING while that cluster has a usable endpoint,
  NOT_SERVING once its health checks fail, NOT_FOUND for a service no
  route takes;
- Watch: the status at once, then each change (a backend killed and
  started again), SERVICE_UNKNOWN for an unknown service, and NOT_SERVING
  then the end of the stream (OK) when the gateway drains;
- other calls on the same route still reach the backend.
"""
import queue
import signal
import threading

import grpc

import harness

SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


def request(service):
    b = service.encode()
    return (b"\x0a" + bytes([len(b)]) + b) if b else b""


def status_of(msg):
    return msg[1] if len(msg) >= 2 and msg[0] == 0x08 else 0  # HealthCheckResponse { status = 1 }


def ident(x):
    return x


class GrpcHealthTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.b0 = harness.start_grpc_backend("b0")
        cls.b1 = harness.start_grpc_backend("b1")
        cls.procs = [cls.b0, cls.b1]
        cls.start_gateway(f"""
routes:
  - {{ name: health, match: {{ grpc_service: grpc.health.v1.Health }}, cluster: echo, grpc_health: true }}
  - {{ name: echo, match: {{ grpc_service: test.v1.Echo }}, cluster: echo }}
  - {{ name: other, match: {{ grpc_service: test.v1.Other }}, cluster: other }}
clusters:
  - name: echo
    protocol: h2c
    endpoints: [127.0.0.1:{cls.b0.port}]
    health_check: {{ type: grpc, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1 }}
  - {{ name: other, protocol: h2c, endpoints: [127.0.0.1:{cls.b1.port}] }}
""")
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.port}")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.finish()

    def check(self, service):
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident,
                                        response_deserializer=ident)
        return status_of(call(request(service), timeout=10))

    def watch(self, service, timeout=30):
        call = self.channel.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=ident,
                                         response_deserializer=ident)
        return call(request(service), timeout=timeout)

    def test_check(self):
        self.assertEqual(self.check(""), SERVING)
        self.assertEqual(self.check("test.v1.Echo"), SERVING)
        self.assertEqual(self.check("test.v1.Other"), SERVING)
        with self.assertRaises(grpc.RpcError) as e:
            self.check("nope.v1.Missing")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        # the backend's own service still answers through the same gateway
        echo = self.channel.unary_unary("/test.v1.Echo/Echo", request_serializer=ident, response_deserializer=ident)
        self.assertEqual(echo(b"hi", timeout=10), b"hi")

    def test_watch_follows_the_endpoints(self):
        stream = self.watch("test.v1.Echo", timeout=60)
        got = queue.Queue()
        threading.Thread(target=lambda: [got.put(status_of(m)) for m in stream], daemon=True).start()
        self.assertEqual(got.get(timeout=10), SERVING)
        type(self).b0.stop()
        self.assertEqual(got.get(timeout=20), NOT_SERVING)
        self.assertEqual(self.check("test.v1.Echo"), NOT_SERVING)
        self.assertEqual(self.check("test.v1.Other"), SERVING)  # its own cluster is fine
        type(self).b0 = harness.start_grpc_backend("b0", port=self.b0.port)
        self.procs[0] = self.b0
        self.assertEqual(got.get(timeout=20), SERVING)
        stream.cancel()

    def test_watch_an_unknown_service(self):
        stream = self.watch("nope.v1.Missing")
        self.assertEqual(status_of(next(stream)), SERVICE_UNKNOWN)
        stream.cancel()

    def test_malformed_request(self):
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident,
                                        response_deserializer=ident)
        with self.assertRaises(grpc.RpcError) as e:
            call(b"\x0a\x10short", timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


class GrpcHealthDrainTest(harness.GatewayTest):
    """A Watch open when the gateway is told to stop: NOT_SERVING, then the
    stream ends with OK, and the gateway exits cleanly without waiting for
    drain_timeout."""

    def test_drain_ends_watches(self):
        b = harness.start_grpc_backend("d0")
        self.addCleanup(b.stop)
        port = harness.free_port()
        gw = harness.Gateway(f"""
workers: 1
drain_timeout: 30s
listeners: [{{ name: main, listen: 127.0.0.1:{port} }}]
routes: [{{ name: all, cluster: c, grpc_health: true }}]
clusters: [{{ name: c, protocol: h2c, endpoints: [127.0.0.1:{b.port}] }}]
""", port=port)
        self.gateway = gw
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        call = ch.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=ident, response_deserializer=ident)
        stream = call(request(""), timeout=60)
        self.assertEqual(status_of(next(stream)), SERVING)
        gw.proc.p.send_signal(signal.SIGTERM)
        self.assertEqual(status_of(next(stream)), NOT_SERVING)
        with self.assertRaises(StopIteration):
            next(stream)
        self.assertEqual(stream.code(), grpc.StatusCode.OK)
        ch.close()
        gw.proc.p.wait(timeout=20)  # it exits by itself: nothing was left to wait for
        self.stop_gateway()


if __name__ == "__main__":
    harness.main()
