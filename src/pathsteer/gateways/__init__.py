"""Usage in from API gateways: their access logs, turned into per-upstream and per-client figures.

A gateway record (`records.Record`) is one finished HTTP request as the gateway logged it: when,
the client (the TCP peer the gateway saw — never a header such as X-Forwarded-For or X-Real-IP,
which the client can forge), the upstream server that answered ("ip:port", or its backend/server
names when the log line does not carry the address), the status, the bytes, the server's
response time and the total time, and whether authentication failed.

The flow, all pure (no sockets, no clock: callers pass ``now``)::

    lines (syslog datagrams, a file, HTTP bodies)
      -> a parser: `haproxy.HaproxyParser` (``option httplog`` lines) or
         `jsonlines.JsonLinesParser` (Apinto/APIPark, nginx, Envoy JSON access logs)
      -> `Record` (None for a malformed line, counted by kind; parsers never raise on input)
      -> `window.UsageWindow.add(record, now)`: a sliding window (10 s) of requests/s, bytes/s,
         status classes and response-time percentiles per upstream, per-client counts, and the
         clients answered 401/403/429 too often (`offenders`).

What is done with the figures, decided purely here, applied by the daemon:

* `health.plan`: path health out — each gateway server's weight from the state of the paths
  carrying its address's destination (drained when none is eligible, lowered while degraded,
  the weight it was found with otherwise; a backend's last servers are never drained);
* `abuse.blocks`: abuse signals in — offenders become guard blocks with the gateway's reason
  (``gateway:edge 401×120/10s``), never on an allow-listed, gateway, path or upstream address.

The pieces that talk to the outside, each tested for real (sockets, files, a real HAProxy) or,
for APIPark/Apinto, against a contract server built from their source (tests/unit/apipark_contract.py):

* `receivers`: syslog over UDP or a Unix datagram socket, a tailed file, HTTP (Apinto's
  ``http_output`` and Loki pushes);
* `runtime.HaproxyRuntime`: HAProxy's runtime API (servers' state and weights, ACL entries);
* `apipark.ApiparkClient` / `apipark.ApintoClient`: upstream node weights through APIPark's
  management API (login, upstream, publish) or Apinto's admin API, and Apinto's ``visit``
  strategy for blocks;
* `webhook.WebhookSender`: path health and route changes POSTed as signed JSON.

The gateway component that wires them into the daemon (config section, steering and guard) is
not built yet (issue 9).
"""
