"""A reload that removes a listener leaves its open connections a valid
reference to what they were accepted with: a keep-alive connection still
gets answers, and one that only now sends the HTTP/2 preface is served as
h2c with its listener's settings (it used to index the new config's
listener table with the removed listener's number). Checked under the
sanitizers, whose reports fail the test at shutdown."""
import signal
import socket
import time

import h2.config
import h2.connection
import h2.events

import harness

CONFIG = """
workers: 1
listeners:
  - name: main
    listen: 127.0.0.1:{port}
{extra}
routes:
  - name: r
    cluster: app
    response_headers: {{ set: {{ x-config: "{tag}" }} }}
clusters:
  - name: app
    endpoints: [127.0.0.1:{app}]
"""


def recv_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(65536)
        if not b:
            return data
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    n = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
    while len(body) < n:
        b = s.recv(65536)
        if not b:
            break
        body += b
    return head


class ReloadRemovesListenerTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("reloaded")
        cls.procs = [cls.app]
        cls.port, cls.port2 = harness.free_port(), harness.free_port()
        cls.gateway = harness.Gateway(cls.config("A"), port=cls.port)
        harness.wait_port(cls.port2)

    @classmethod
    def config(cls, tag):
        extra = f"  - name: extra\n    listen: 127.0.0.1:{cls.port2}" if tag == "A" else ""
        return CONFIG.format(port=cls.port, extra=extra, tag=tag, app=cls.app.port)

    def tag(self, s):
        s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        head = recv_response(s)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        return next(l.split(b":")[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"x-config"))

    def test_connections_of_a_removed_listener(self):
        keep = socket.create_connection(("127.0.0.1", self.port2), timeout=10)
        self.assertEqual(self.tag(keep), b"A")
        late_h2 = socket.create_connection(("127.0.0.1", self.port2), timeout=10)
        # accepted before the reload: out of the kernel's accept queue
        harness.wait_until(lambda: harness.accept_queue(self.port2) == 0, what="the connection accepted")

        with open(self.gateway.path, "w") as f:
            f.write(self.config("B"))
        self.gateway.proc.p.send_signal(signal.SIGHUP)
        main = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        harness.wait_until(lambda: self.tag(main) == b"B", what="config B in force")
        with self.assertRaises(OSError):  # the listener itself is gone
            socket.create_connection(("127.0.0.1", self.port2), timeout=2).close()

        # the keep-alive connection is still served (by the current routes)
        self.assertEqual(self.tag(keep), b"B")
        keep.close()

        # HTTP/2 prior knowledge on the removed listener's connection
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", "/whoami"), (":scheme", "http"),
                                (":authority", "x")], end_stream=True)
        late_h2.sendall(conn.data_to_send())
        status, ended = None, False
        deadline = time.time() + 30
        while not ended and time.time() < deadline:
            data = late_h2.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[":status"]
                if isinstance(ev, h2.events.StreamEnded):
                    ended = True
            late_h2.sendall(conn.data_to_send())
        late_h2.close()
        self.assertEqual(status, "200")
        self.assertTrue(ended)
        self.assertIsNone(self.gateway.proc.p.poll(), "the gateway died")


if __name__ == "__main__":
    harness.main()


def listen_backlogs(port):
    """The backlog (ss's Send-Q) of each socket listening on port."""
    out = harness.subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                                 timeout=10).stdout
    return sorted(int(line.split()[2]) for line in out.splitlines() if line.strip())


class ListenBacklogTest(harness.GatewayTest):
    """listen_backlog is what the kernel queues (ss shows it for each
    worker's SO_REUSEPORT socket), 4096 unless set; a reload that changes
    it applies it to the sockets kept for the same address."""

    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("backlog-app")
        cls.procs = [cls.app]
        cls.port, cls.port2 = harness.free_port(), harness.free_port()
        cls.body = """
workers: 2
listeners:
  - {{ name: main, listen: 127.0.0.1:{port}, listen_backlog: {backlog} }}
  - {{ name: other, listen: 127.0.0.1:{port2} }}
routes: [{{ name: r, cluster: app }}]
clusters: [{{ name: app, endpoints: [127.0.0.1:{app}] }}]
"""
        cls.gateway = harness.Gateway(cls.body.format(port=cls.port, port2=cls.port2, backlog=77, app=cls.app.port),
                                      port=cls.port)

    def test_backlog_set_and_reloaded(self):
        self.assertEqual(listen_backlogs(self.port), [77, 77])
        self.assertEqual(listen_backlogs(self.port2), [4096, 4096])
        with open(self.gateway.path, "w") as f:
            f.write(self.body.format(port=self.port, port2=self.port2, backlog=333, app=self.app.port))
        self.gateway.proc.p.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline and listen_backlogs(self.port) != [333, 333]:
            time.sleep(0.05)
        self.assertEqual(listen_backlogs(self.port), [333, 333])
        rc, body, _ = harness.curl(f"http://127.0.0.1:{self.port}/whoami")
        self.assertEqual(rc, 0)
