"""The load balancer in front of a cluster: a complete nginx configuration, round robin over
the nodes for ``/``, ``/ws`` and ``/webSocket/`` (WebSocket upgrade, idle timeouts longer
than the ping interval), with connection and request-rate limits per client address, never
passing on ``/rlink`` or (except in the local demo) the quick-start sign-in ``/dev/``, nor,
unless asked, ``/health`` and ``/metrics``.
"""

from typing import Sequence

from components.core.settings import PING_INTERVAL_MS, PING_TIMEOUT_MS
from components.ops.meshconfig import RLINK_PATH
from components.ops.topology import NodeSpec

#: nginx idle timeouts (s): longer than the WebSocket ping interval plus its timeout
PROXY_TIMEOUT_S = max(60, 3 * (PING_INTERVAL_MS + PING_TIMEOUT_MS) // 1000)
DEFAULT_LB_PORT = 8000
#: per client address at the load balancer: connections held open (every WebSocket is one) and
#: new requests per second (every WebSocket upgrade is one), with the burst allowed above that.
#: Many users behind one NAT share an address: raise these for such sites.
DEFAULT_LB_CONN_PER_IP = 512
DEFAULT_LB_RATE_PER_IP = 50
DEFAULT_LB_BURST = 200
#: each WebSocket through the balancer holds two connections (the client's and the node's); a
#: node that dies sends all its clients to the others through it at once: room for 20,000 pages
#: reconnecting per worker, the open files to hold them, and a listen queue that takes a storm
#: (nginx's default is 511, and 1,024 connections per worker: about 500 WebSockets)
LB_WORKER_CONNECTIONS = 50000
LB_WORKER_FILES = 2 * LB_WORKER_CONNECTIONS
LB_LISTEN_BACKLOG = 4096


def internal_locations(expose: bool) -> str:
    """nginx ``location`` blocks for the internal paths: 404 unless ``expose``.

    :rtype: str
    """
    if expose:
        return ("        # /health and /metrics proxied on request (`cluster init --expose-internal`): the\n"
                "        # answer comes from whichever node the round robin picks\n"
                "        location = /health {\n            proxy_pass http://deptcast;\n        }\n"
                "        location /health/ {\n            proxy_pass http://deptcast;\n        }\n"
                "        location = /metrics {\n            proxy_pass http://deptcast;\n        }\n")
    return ("        # internal: ask (and scrape) each node directly, not through the balancer\n"
            "        location = /health {\n            return 404;\n        }\n"
            "        location /health/ {\n            return 404;\n        }\n"
            "        location = /metrics {\n            return 404;\n        }\n")


def nginx_config(nodes: Sequence[NodeSpec], listen: str = str(DEFAULT_LB_PORT), dev: bool = False,
                 conn_per_ip: int = DEFAULT_LB_CONN_PER_IP, rate_per_ip: int = DEFAULT_LB_RATE_PER_IP,
                 burst: int = DEFAULT_LB_BURST, expose_internal: bool = False) -> str:
    """A complete nginx configuration: round robin over ``nodes`` for ``/``, ``/ws`` and
    ``/webSocket/`` (WebSocket upgrade, idle timeouts longer than the ping interval).

    Paths (pid, logs, temp files) are relative, so ``nginx -p DIR -c FILE`` keeps them in
    ``DIR``; ``/rlink`` is not proxied (404): peers connect to each other directly. Every
    request passed on carries ``X-Forwarded-For``. Each client address may hold
    ``conn_per_ip`` connections and open ``rate_per_ip`` requests per second (``burst`` more
    at once); past that nginx answers 429.

    :param listen: nginx's ``listen`` argument, e.g. ``8000`` or ``127.0.0.1:8000``
    :param dev: the local demo's balancer: pass the quick-start sign-in ``/dev/`` on (to
        clients on this machine only); otherwise ``/dev/`` is answered 404 by nginx itself
    :param expose_internal: proxy ``/health`` and ``/metrics`` too (else 404: scrape each node)
    :rtype: str
    """
    servers = "\n".join(f"        server {n.address} max_fails=1 fail_timeout=2s;" for n in nodes)
    ws_servers = "\n".join(f"        server {n.address} max_fails=0;" for n in nodes)
    forwarded = """            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;"""
    websocket = f"""            proxy_pass http://deptcast_ws;
            # a node that is stopping (or down) refuses at once: the next one is tried
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
{forwarded}
            proxy_buffering off;
            proxy_read_timeout {PROXY_TIMEOUT_S}s;
            proxy_send_timeout {PROXY_TIMEOUT_S}s;"""
    if dev:
        dev_location = """        # the local demo's sign-in form: passed on without proxy headers (the node answers
        # requests from this machine only, and refuses any that a proxy marked)
        location /dev/ {
            allow 127.0.0.1;
            allow ::1;
            deny all;
            proxy_pass http://deptcast;
            proxy_set_header Host $host;
        }"""
    else:
        dev_location = """        # the quick-start sign-in mints any token: never reachable through the balancer
        location /dev/ {
            return 404;
        }"""
    return f"""# deptcast load balancer, generated by `deptcast cluster init`: do not edit by hand.
# Run: nginx -p <this directory>/nginx -c <this directory>/nginx.conf
worker_processes auto;
worker_rlimit_nofile {LB_WORKER_FILES};
pid nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections {LB_WORKER_CONNECTIONS};
    multi_accept on;
}}

http {{
    # $uri, not $request: a legacy client's query string holds its token. (The error log
    # writes the whole request line when an upstream is down: pages that pass their token in
    # the Sec-WebSocket-Protocol header keep it out of there too.)
    log_format deptcast '$remote_addr [$time_local] "$request_method $uri" $status '
                        'upstream=$upstream_addr time=$request_time';
    access_log logs/access.log deptcast;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    # the page's scripts are ~400 KB as served by the nodes, ~110 KB compressed
    gzip on;
    gzip_types text/css application/javascript text/javascript application/json;
    gzip_min_length 1024;
    # POST /api/send_batch: one WAMP call's worth (448 KiB with the 64 KiB message limit)
    client_max_body_size 512k;
    client_header_timeout 10s;
    client_body_timeout 10s;

    # per client address: connections held open (each WebSocket is one) and requests per
    # second (each WebSocket upgrade is one); many users behind one NAT share an address
    limit_conn_zone $binary_remote_addr zone=deptcast_conn:10m;
    limit_req_zone $binary_remote_addr zone=deptcast_req:10m rate={rate_per_ip}r/s;
    limit_conn_status 429;
    limit_req_status 429;
    limit_conn_log_level warn;
    limit_req_log_level warn;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    # round robin (nginx's default); a node that refuses connections is skipped (passive
    # health: marked down for 2 s after a failure). Active checks of /health/serving need
    # nginx Plus (health_check) or another balancer (HAProxy: option httpchk GET /health/serving).
    upstream deptcast {{
{servers}
    }}

    # the same nodes for WebSockets, without marking them down: nginx counts a node's
    # failure as cleared only when a connection through it ends, which for a WebSocket is
    # hours later, so after a rolling restart every node would stay "down" and reconnecting
    # clients would get 502 "no live upstreams" (seen in the rolling restart test)
    upstream deptcast_ws {{
{ws_servers}
    }}

    server {{
        listen {listen} backlog={LB_LISTEN_BACKLOG};
        limit_conn deptcast_conn {conn_per_ip};
        limit_req zone=deptcast_req burst={burst} nodelay;

        location /ws {{
{websocket}
        }}

        location /webSocket/ {{
{websocket}
        }}

        # router links connect node to node, never through the balancer
        location /{RLINK_PATH} {{
            return 404;
        }}

{dev_location}
{internal_locations(expose_internal)}

        location / {{
            proxy_pass http://deptcast;
{forwarded}
            proxy_read_timeout {PROXY_TIMEOUT_S}s;
        }}
    }}
}}
"""
