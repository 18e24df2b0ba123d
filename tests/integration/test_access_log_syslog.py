"""access_log to syslog: one RFC 5424 datagram per request, over UDP and
over a Unix datagram socket (as /dev/log), with the configured facility
and app name; the message is the line the file output would have had.
A receiver that goes away costs the worker nothing: lines are counted as
dropped. Config errors name their line."""
import json
import os
import re
import socket
import subprocess
import tempfile
import time

import harness

RFC5424 = re.compile(r"^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\d+) access - (.*)$", re.S)


def receive(sock, n, timeout=10):
    sock.settimeout(0.5)
    got, deadline = [], time.time() + timeout
    while len(got) < n and time.time() < deadline:
        try:
            got.append(sock.recv(65536).decode())
        except socket.timeout:
            pass
    return got


class AccessLogSyslogTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls.udp.bind(("127.0.0.1", 0))
        cls.dir = tempfile.mkdtemp(prefix="tg-syslog-")
        cls.unix_path = os.path.join(cls.dir, "log.sock")
        cls.unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        cls.unix.bind(cls.unix_path)
        gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a port nobody listens on any more
        gone.bind(("127.0.0.1", 0))
        cls.gone_port = gone.getsockname()[1]
        gone.close()
        cls.start_app_and_gateway("syslog-app", f"""
routes:
  - name: gone
    match: {{ path_prefix: /gone }}
    cluster: app
    filters:
      - access_log: {{ syslog: "udp:127.0.0.1:{cls.gone_port}" }}
  - name: udp
    match: {{ path_prefix: /udp }}
    cluster: app
    filters:
      - access_log: {{ syslog: "udp:127.0.0.1:{cls.udp.getsockname()[1]}", facility: local3, app_name: gw-edge }}
  - name: unix
    cluster: app
    filters:
      - access_log: {{ syslog: "unix:{cls.unix_path}", format: "{{method}} {{path}} {{status}}" }}
""")

    def test_udp_json_lines(self):
        for i in range(3):
            harness.curl(self.gateway.url(f"/udp/{i}"))
        got = receive(self.udp, 3)
        self.assertEqual(len(got), 3, got)
        for i, d in enumerate(got):
            m = RFC5424.match(d)
            self.assertIsNotNone(m, d)
            self.assertEqual(int(m.group(1)), 19 * 8 + 6)  # local3, informational
            self.assertEqual(m.group(4), "gw-edge")
            self.assertEqual(int(m.group(5)), self.gateway.proc.pid)
            rec = json.loads(m.group(6))  # the JSON line, one per datagram, no newline
            self.assertEqual(rec["path"], f"/udp/{i}")
            self.assertEqual(rec["status"], 404)

    def test_unix_socket_template_lines(self):
        harness.curl(self.gateway.url("/whoami"))
        got = receive(self.unix, 1)
        self.assertEqual(len(got), 1, got)
        m = RFC5424.match(got[0])
        self.assertEqual(int(m.group(1)), 16 * 8 + 6)  # local0 by default
        self.assertEqual(m.group(4), "tollgate")
        self.assertEqual(m.group(6), "GET /whoami 200")

    def test_receiver_gone_lines_counted_as_dropped(self):
        for i in range(4):  # the first datagram draws the ICMP refusal; the next ones fail at once
            # answered whatever the log does: a line the writer thread cannot
            # send is dropped, never waited for (curl's own bound guards a hang)
            rc, _, _ = harness.curl(self.gateway.url(f"/gone/{i}"))
            self.assertEqual(rc, 0)
            time.sleep(0.25)
        deadline = time.time() + 30
        while time.time() < deadline and "line(s) dropped" not in self.gateway.proc.output():
            time.sleep(0.1)
        self.assertIn(f"access_log udp:127.0.0.1:{self.gone_port}:", self.gateway.proc.output())

    def test_config_errors(self):
        base = ("listeners: [{ name: m, listen: 127.0.0.1:1 }]\nclusters: [{ name: a, endpoints: [127.0.0.1:2] }]\n"
                "routes:\n  - name: r\n    cluster: a\n    filters:\n      - access_log: ")
        cases = {
            "{ syslog: 'tcp:127.0.0.1:514' }": "give udp:HOST:PORT or unix:PATH",
            "{ syslog: 'udp:127.0.0.1:514', path: /tmp/x.log }": "give path or syslog, not both",
            "{ syslog: 'udp:127.0.0.1:514', facility: local9 }": "is not a syslog facility",
            "{ path: stdout, app_name: x }": "facility and app_name go with syslog",
            "{ syslog: 'unix:/nonexistent/log.sock' }": "cannot reach unix:/nonexistent/log.sock",
        }
        for body, want in cases.items():
            with self.subTest(body):
                path = os.path.join(self.dir, "t.yaml")
                with open(path, "w") as f:
                    f.write(base + body + "\n")
                p = subprocess.run([harness.BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 1)
                self.assertIn("t.yaml:7:", p.stderr)
                self.assertIn(want, p.stderr)


if __name__ == "__main__":
    harness.main()
