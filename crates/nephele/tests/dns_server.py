"""A loopback DNS server for nephele's MX test, built on dnslib.

Usage: dns_server.py ZONE_FILE. Serves the zone (BIND format, e.g.
"example.test. 60 IN MX 10 mx.example.test.") over UDP and TCP on
127.0.0.1, port 0 (UDP and TCP on the same number), and prints
"dns listening on 127.0.0.1:PORT". A name in the zone asked for a type it
does not have gets an empty NOERROR answer (NODATA), as from a real server;
only names not in the zone get NXDOMAIN.
"""

import socket
import sys
import time

from dnslib import RCODE
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver


class NodataZoneResolver(ZoneResolver):
    # dnslib's ZoneResolver answers NXDOMAIN whenever nothing matched.
    def resolve(self, request, handler):
        reply = super().resolve(request, handler)
        if not reply.rr and any(name == request.q.qname for name, _, _ in self.zone):
            reply.header.rcode = RCODE.NOERROR
        return reply


def free_port():
    # A port free for both UDP and TCP.
    while True:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            continue
        tcp.close()
        udp.close()
        return port


resolver = NodataZoneResolver(open(sys.argv[1]).read())
port = free_port()
servers = [
    DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp,
              logger=DNSLogger(logf=lambda _: None))
    for tcp in (False, True)
]
for server in servers:
    server.start_thread()
print("dns listening on 127.0.0.1:%d" % port, flush=True)
while True:
    time.sleep(3600)
