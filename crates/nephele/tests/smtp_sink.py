"""An SMTP sink for nephele's tests, built on aiosmtpd.

Usage: smtp_sink.py DIR [HOST [CERT.pem KEY.pem]]. Listens on HOST (default
127.0.0.1), port 0, prints "sink listening on HOST:PORT", and writes each
received message to DIR as N.eml (the data, byte for byte) and N.json
(mail_from, rcpt_tos, peer, tls: whether STARTTLS protected the session).
With a certificate and key it offers STARTTLS. Recipients whose local part starts with "tempfail" get one 451 per
address, then 250; those starting with "reject" always get 550.
"""

import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.tempfailed = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 no such user here"
        if local.startswith("tempfail") and address not in self.tempfailed:
            self.tempfailed.add(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "peer": session.peer[0],
            "tls": session.ssl is not None,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as %d" % self.count


async def main():
    directory = sys.argv[1]
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    tls_context = None
    if len(sys.argv) > 4:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(sys.argv[3], sys.argv[4])
    handler = Handler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler, decode_data=False, hostname="sink.test", tls_context=tls_context
        ),
        host,
        0,
    )
    port = server.sockets[0].getsockname()[1]
    print("sink listening on %s:%d" % (host, port), flush=True)
    await server.serve_forever()


asyncio.run(main())
