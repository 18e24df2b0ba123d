"""HTTP/2 limits a client can push against, with raw frames (hpack for the
header blocks): the configured SETTINGS and windows are what the gateway
announces and enforces; a stream over max_concurrent_streams is refused;
DATA beyond a window and a WINDOW_UPDATE overflow are flow-control errors;
a reader stalled at a zero window stalls only its own stream and holds
the gateway's memory bounded; a CONTINUATION flood ends the connection;
a request whose DATA disagrees with its content-length never reaches the
HTTP/1.1 upstream as a well-framed request."""
import socket
import time

import hpack

import harness

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 7, 8, 9
FLOW_CONTROL_ERROR, REFUSED_STREAM, PROTOCOL_ERROR = 3, 7, 1


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def settings(**kv):
    ids = {"header_table_size": 1, "max_concurrent_streams": 3, "initial_window_size": 4, "max_frame_size": 5,
           "max_header_list_size": 6}
    return frame(SETTINGS, 0, 0, b"".join(ids[k].to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in kv.items()))


def parse(buf):
    """Complete frames in buf: ([(type, flags, stream, payload)], rest)."""
    out = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + n:
            break
        out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]))
        buf = buf[9 + n:]
    return out, buf


class Conn:
    def __init__(self, port, client_settings=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.enc = hpack.Encoder()
        self.buf = b""
        self.frames = []
        self.closed = False
        self.s.sendall(PREFACE + (client_settings or settings()))

    def send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            self.closed = True

    def request(self, sid, path, method="GET", end_stream=True, extra=()):
        block = self.enc.encode([(":method", method), (":path", path), (":scheme", "http"), (":authority", "x"),
                                 *extra])
        self.send(frame(HEADERS, 0x4 | (0x1 if end_stream else 0), sid, block))

    def read_until(self, pred, timeout=10):
        """Reads frames (acking the server's SETTINGS) until pred(frames) or
        close or timeout; returns whether pred held."""
        deadline = time.time() + timeout
        while not pred(self.frames) and not self.closed and time.time() < deadline:
            self.s.settimeout(max(0.05, deadline - time.time()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                self.closed = True
                break
            if not d:
                self.closed = True
                break
            got, self.buf = parse(self.buf + d)
            for f in got:
                if f[0] == SETTINGS and not f[1] & 1:
                    self.send(frame(SETTINGS, 1, 0))
            self.frames += got
        return pred(self.frames)

    def close(self):
        self.s.close()


def goaway_code(frames):
    g = [f for f in frames if f[0] == GOAWAY]
    return int.from_bytes(g[-1][3][4:8], "big") if g else None


def rst_code(frames, sid):
    r = [f for f in frames if f[0] == RST and f[2] == sid]
    return int.from_bytes(r[-1][3][:4], "big") if r else None


def ended(frames, sid):
    return any(f[2] == sid and f[0] in (DATA, HEADERS) and f[1] & 1 for f in frames)


class Http2LimitsTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("h2-limits")
        cls.rec = harness.RecordingUpstream()
        cls.hole = harness.BlackHole()
        cls.procs = [cls.app]
        cls.port = harness.free_port()
        cls.gateway = harness.Gateway(f"""
workers: 1
listeners:
  - name: main
    listen: 127.0.0.1:{cls.port}
    http2: {{ max_concurrent_streams: 2, initial_window_size: 16KiB, connection_window_size: 128KiB,
             max_header_list_size: 8KiB }}
routes:
  - name: recorded
    match: {{ path_prefix: /recorded }}
    cluster: rec
  - name: nowhere
    match: {{ path_prefix: /nowhere }}
    cluster: hole
  - name: default
    cluster: app
clusters:
  - {{ name: app, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: rec, endpoints: [127.0.0.1:{cls.rec.port}] }}
  - {{ name: hole, endpoints: [127.0.0.1:{cls.hole.port}], connect_timeout: 10s }}
""", port=cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.rec.stop()
        cls.hole.stop()
        cls.finish()

    def test_announced_settings_and_windows(self):
        c = Conn(self.port)
        try:
            c.read_until(lambda fs: any(f[0] == WINDOW_UPDATE and f[2] == 0 for f in fs))
        finally:
            c.close()
        s = next(f for f in c.frames if f[0] == SETTINGS and not f[1] & 1)[3]
        got = {int.from_bytes(s[i:i + 2], "big"): int.from_bytes(s[i + 2:i + 6], "big") for i in range(0, len(s), 6)}
        self.assertEqual(got[3], 2)          # MAX_CONCURRENT_STREAMS
        self.assertEqual(got[4], 16384)      # INITIAL_WINDOW_SIZE
        self.assertEqual(got[6], 8192)       # MAX_HEADER_LIST_SIZE
        wu = next(f for f in c.frames if f[0] == WINDOW_UPDATE and f[2] == 0)[3]
        self.assertEqual(int.from_bytes(wu, "big") + 65535, 128 * 1024)  # the connection window

    def test_stream_over_max_concurrent_streams_is_refused(self):
        c = Conn(self.port)
        try:
            for sid in (1, 3, 5):  # three slow requests at once; the limit is two
                c.request(sid, "/slow?delay=1")
            c.read_until(lambda fs: rst_code(fs, 5) is not None or goaway_code(fs) is not None)
            self.assertIn(rst_code(c.frames, 5), (REFUSED_STREAM, PROTOCOL_ERROR), c.frames)
            c.read_until(lambda fs: ended(fs, 1) and ended(fs, 3))
            self.assertTrue(ended(c.frames, 1) and ended(c.frames, 3))  # the first two are served
        finally:
            c.close()

    def test_data_beyond_the_stream_window(self):
        c = Conn(self.port)
        try:
            # the 16 KiB window holds once our ACK of the server's SETTINGS is
            # in (before it, the default 64 KiB does); an upstream that never
            # connects takes nothing, so the window never reopens
            c.read_until(lambda fs: any(f[0] == SETTINGS and not f[1] & 1 for f in fs))
            c.request(1, "/nowhere/upload", method="POST", end_stream=False)
            c.send(frame(DATA, 0, 1, b"x" * 8192) * 3)
            c.read_until(lambda fs: rst_code(fs, 1) is not None or goaway_code(fs) is not None)
            self.assertEqual(rst_code(c.frames, 1) or goaway_code(c.frames), FLOW_CONTROL_ERROR, c.frames)
        finally:
            c.close()

    def test_window_update_overflow(self):
        c = Conn(self.port)
        try:
            c.read_until(lambda fs: any(f[0] == SETTINGS for f in fs))
            c.send(frame(WINDOW_UPDATE, 0, 0, (0x7FFFFFFF).to_bytes(4, "big")))  # past 2^31-1
            c.read_until(lambda fs: goaway_code(fs) is not None)
            self.assertEqual(goaway_code(c.frames), FLOW_CONTROL_ERROR)
        finally:
            c.close()

    def test_stalled_reader_holds_only_its_stream(self):
        """A client that opens no window for its download (INITIAL_WINDOW_SIZE
        0, never a WINDOW_UPDATE for it): the gateway stops reading that
        response upstream (RSS stays within a few MiB of what it was,
        while the app offers 64 MiB), and another stream on the same
        connection is served normally."""
        pid = self.gateway.proc.pid
        before = harness.rss_kib(pid)
        c = Conn(self.port, settings(initial_window_size=0))
        try:
            c.request(1, "/download?size=67108864")
            c.read_until(lambda fs: any(f[0] == HEADERS and f[2] == 1 for f in fs))
            time.sleep(1)  # let the upstream push what it can; the gateway must not take it all
            c.request(3, "/whoami")
            c.send(frame(WINDOW_UPDATE, 0, 3, (65535).to_bytes(4, "big")))
            self.assertTrue(c.read_until(lambda fs: ended(fs, 3)), c.frames[-5:])
            body = b"".join(f[3] for f in c.frames if f[0] == DATA and f[2] == 3)
            self.assertEqual(body, b'{"name":"h2-limits"}')
            self.assertFalse(ended(c.frames, 1))
            self.assertEqual(sum(len(f[3]) for f in c.frames if f[0] == DATA and f[2] == 1), 0)
            self.assertLess(harness.rss_kib(pid) - before, 16 * 1024)
        finally:
            c.close()

    def test_fin_with_a_response_stuck_on_window_closes(self):
        """Regression: after the client's FIN no WINDOW_UPDATE can come, so a
        response waiting for window can never finish; the connection used
        to stay open (for the route's 5 min idle timeout, holding a drain
        up as long). It now closes at once."""
        c = Conn(self.port, settings(initial_window_size=0))
        try:
            c.request(1, "/download?size=1048576")
            c.read_until(lambda fs: any(f[0] == HEADERS and f[2] == 1 for f in fs))
            c.s.shutdown(socket.SHUT_WR)
            c.read_until(lambda fs: False, timeout=30)
            self.assertTrue(c.closed)  # not left for the 5 min idle timeout
        finally:
            c.close()

    def test_continuation_flood_ends_the_connection(self):
        """HEADERS without END_HEADERS, then CONTINUATION frames without end
        (CVE-2024-27316 class): the connection ends, it is not read forever."""
        c = Conn(self.port)
        try:
            c.send(frame(HEADERS, 0, 1, c.enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                                      (":authority", "x")])))
            junk = hpack.Encoder()
            sent = 0
            for i in range(20000):
                c.send(frame(CONTINUATION, 0, 1, junk.encode([(f"x-flood-{i}", "v" * 100)])))
                sent += 1
                if c.closed:
                    break
            c.read_until(lambda fs: goaway_code(fs) is not None)
            self.assertTrue(c.closed or goaway_code(c.frames) is not None, "the flood was read to the end")
        finally:
            c.close()

    def test_content_length_disagreeing_with_data(self):
        """content-length 10 with 5 bytes of DATA then END_STREAM, and 5 with 10:
        a malformed request (RFC 9113 8.1.1). The stream is reset, and the
        HTTP/1.1 upstream never gets a complete request from it (its
        Content-Length framing would otherwise be wrong)."""
        for sid, declared, sent in ((1, 10, b"12345"), (3, 5, b"1234567890")):
            with self.subTest(declared=declared, sent=len(sent)):
                with self.rec.lock:
                    n_complete = len(self.rec.complete)
                c = Conn(self.port)
                try:
                    c.request(sid, f"/recorded/cl{sid}", method="POST", end_stream=False,
                              extra=[("content-length", str(declared))])
                    c.send(frame(DATA, 1, sid, sent))
                    c.read_until(lambda fs: rst_code(fs, sid) is not None or goaway_code(fs) is not None
                                 or ended(fs, sid))
                    self.assertFalse(ended(c.frames, sid) and rst_code(c.frames, sid) is None, c.frames)
                    self.assertEqual(rst_code(c.frames, sid) or goaway_code(c.frames), PROTOCOL_ERROR, c.frames)
                finally:
                    c.close()
                time.sleep(0.2)
                with self.rec.lock:
                    self.assertEqual(self.rec.complete[n_complete:], [])


if __name__ == "__main__":
    harness.main()
