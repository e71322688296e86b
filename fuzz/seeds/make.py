#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/: a few small valid
inputs each, from which the fuzzer mutates. Run from anywhere; rewrites the seed files only."""
import os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def client_hello(name, cut=4096):
    n = name.encode()
    sni = b"\0" + struct.pack(">H", len(n)) + n
    ext = struct.pack(">HH", 0, len(sni) + 2) + struct.pack(">H", len(sni)) + sni
    body = b"\3\3" + bytes(32) + b"\0" + b"\0\2\x13\x01" + b"\1\0" + struct.pack(">H", len(ext)) + ext
    msg = b"\1\0" + struct.pack(">H", len(body)) + body
    return b"".join(b"\x16\3\1" + struct.pack(">H", len(msg[i:i + cut])) + msg[i:i + cut]
                    for i in range(0, len(msg), cut))


put("client_hello", "one-record", client_hello("example.com"))
put("client_hello", "split", client_hello("a.example", 7))
put("client_hello", "built", b"\x05www.example.org")

sig = b"\r\n\r\n\0\r\nQUIT\n"
put("proxy_protocol", "v1-tcp4", "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET /")
put("proxy_protocol", "v1-tcp6", "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n")
put("proxy_protocol", "v1-unknown", "PROXY UNKNOWN\r\n")
put("proxy_protocol", "v2-tcp4", sig + b"\x21\x11\0\x0c" + bytes([192, 0, 2, 1, 10, 0, 0, 1]) + b"\x01\xbb\x00\x50")
put("proxy_protocol", "v2-tcp6-tlv", sig + b"\x21\x21\0\x28" + bytes(range(32)) + b"\0\1\0\2" + b"\x04\0\1x")
put("proxy_protocol", "v2-local", sig + b"\x20\0\0\0")
put("proxy_protocol", "built", bytes(range(38)))

# udp_sessions: 4 bytes of limits, then (op, arg) pairs.
put("udp_sessions", "idle", bytes([0, 0, 0x85, 0x83]) + bytes([0, 1, 0, 2, 2, 0, 4, 3, 0, 1, 4, 10, 2, 1]))
put("udp_sessions", "limits", bytes([2, 1, 0, 0]) + bytes([0, 1, 0, 1, 0, 1, 2, 0, 2, 1, 3, 2, 0, 3]))

for name in ["betwixt.toml", "discovery.toml", "routing.toml", "priority-failover.toml", "acme.toml"]:
    with open(os.path.join(REPO, "config", name), "rb") as f:
        put("config", name, b"\0" + f.read())
with open(os.path.join(REPO, "config", "roundrobin.json"), "rb") as f:
    put("config", "roundrobin.json", b"\1" + f.read())
put("config", "env.toml", b"\2[servers.a]\nbind = \"127.0.0.1:${PORT}\"\n[servers.a.discovery]\nkind = \"static\"\nstatic_list = [\"127.0.0.1:80\"]\n")

for i, d in enumerate(["0", "1h30m", "1.5s", "500ms", "2562047h47m16.854775807s", ".5us", "1µs", "+3m"]):
    put("duration", str(i), d)

put("backend_lines", "lines", "a:1\nb.example:80 weight=3 priority=2 max_connections=10 sni=x.example\n[::1]:443\n\n")
put("backend_lines", "hostport", "[2001:db8::1]:8080")

put("access_rules", "rules", "deny\nallow 127.0.0.1\nallow 10.0.0.0/8\ndeny ::1/128\nallow 2001:db8::/32")
put("access_rules", "empty", "\n")

server = ('{"bind":"127.0.0.1:3000","protocol":"tcp","balance":"weight","max_connections":10,'
          '"client_idle_timeout":"10m","backend_idle_timeout":"1m","backend_connection_timeout":"2s",'
          '"discovery":{"kind":"static","static_list":["127.0.0.1:8000 weight=2","127.0.0.1:8001"]},'
          '"healthcheck":{"kind":"ping","interval":"2s","timeout":"1s","fails":2,"passes":1},'
          '"access":{"default":"allow","rules":["deny 10.0.0.0/8"]}}')
put("api_server", "static", "web\0" + server)
put("api_server", "udp", 'dns\0{"bind":"127.0.0.1:5353","protocol":"udp","udp":{"max_requests":1,"max_responses":1},'
    '"discovery":{"kind":"srv","srv_lookup_server":"127.0.0.1:53","srv_lookup_pattern":"_dns._udp.example."}}')
put("api_server", "json", 'j\0{"bind":":3001","discovery":{"kind":"json","json_endpoint":"http://127.0.0.1:1/x"}}')

for i, p in enumerate([b"\0/servers/web/", b"\1/servers/web?x=1", b"\2/servers/a%2Fb?drain=1m", b"\0/ping", b"\4/dump/"]):
    put("api_path", str(i), p)


def name(n):
    return b"".join(bytes([len(p)]) + p for p in n.split(b".") if p) + b"\0"


def srv_answer():
    header = struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 2, 0, 2)
    q = name(b"_web._tcp.example") + struct.pack(">HH", 33, 1)
    rr = b""
    for i, t in enumerate([b"a.example", b"b.example"]):
        data = struct.pack(">HHH", 1, 10, 8080 + i) + name(t)
        rr += name(b"_web._tcp.example") + struct.pack(">HHIH", 33, 1, 60, len(data)) + data
    add = name(b"a.example") + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    add += name(b"b.example") + struct.pack(">HHIH", 28, 1, 60, 16) + bytes(15) + b"\1"
    return header + q + rr + add


put("srv_answer", "answer", srv_answer())

put("discovery_json", "default", '[{"host":"10.0.0.1","port":80,"weight":2,"sni":"a"},{"host":"[::1]","port":"81"}]')
put("discovery_json", "patterns", 'addr.ip\0addr.port\0w\0p\0tls.\'server.name\'\0limits.[0]\0'
    '[{"addr":{"ip":"h.example","port":443},"w":3,"p":1.5,"tls":{"server.name":"s"},"limits":[7]}]')

put("discovery_plaintext", "lines", "10.0.0.1:80 weight=2\n10.0.0.2:81\n")
put("discovery_plaintext", "regex", r"(?P<host>\S+)\s+(?P<port>\d+)(\s+(?P<weight>\d+))?" + "\0h1 80 3\nh2 81\n")

put("discovery_docker", "list", '[{"Id":"0123456789abcdef","Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":32768,"Type":"tcp"}]}]')
put("discovery_docker", "inspect", '{"Config":{"Env":["PATH=/bin","HOST=10.0.0.5"]}}')
put("discovery_docker", "event", '{"Type":"container","Action":"start","Actor":{"ID":"x"}}')

put("discovery_consul", "entries", '[{"Node":{"Address":"10.0.0.1"},"Service":{"Address":"","Port":8080,"Tags":["sni=a.example"]},"Checks":[]},'
    '{"Node":{"Address":"10.0.0.2"},"Service":{"Address":"web.example","Port":80}}]')

slice = ('{"kind":"EndpointSlice","metadata":{"name":"web-abc","resourceVersion":"7"},"addressType":"IPv4",'
         '"ports":[{"name":"http","port":8080,"protocol":"TCP"}],'
         '"endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}},{"addresses":["10.0.0.2"],"conditions":{"ready":false}}]}')
put("discovery_kubernetes", "list", '{"kind":"EndpointSliceList","metadata":{"resourceVersion":"100"},"items":[' + slice + ']}'
    + "\0" + '{"type":"MODIFIED","object":' + slice + '}\n{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"101"}}}\n'
    + '{"type":"DELETED","object":' + slice + '}\n{"type":"ERROR","object":{"kind":"Status","code":410}}\n')
put("discovery_kubernetes", "port", "port=http\n" + '{"kind":"EndpointSliceList","items":[' + slice + ']}')

put("kubeconfig", "token", """apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
- name: dev
  context: {cluster: dev, user: me, namespace: web}
users:
- name: me
  user:
    token: abc.def
""")
put("kubeconfig", "files", "current-context: c\nclusters: [{name: k, cluster: {server: 'https://k:443', certificate-authority: ca.pem}}]\n"
    "contexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {tokenFile: token, client-key: k.pem}}]\n")

lxd = ('{"type":"sync","status":"Success","metadata":[{"name":"web1","status":"Running",'
       '"config":{"user.label":"web","user.port":"8081","user.sni":"a.example","user.interface":"eth1"},'
       '"state":{"network":{"eth0":{"addresses":[{"family":"inet6","address":"fd42::5"},{"family":"inet","address":"10.0.3.5"}]},'
       '"eth1":{"addresses":[{"family":"inet","address":"10.0.4.5"}]}}}},'
       '{"name":"web2","status":"Stopped","config":{},"state":null}]}')
for mode in [0, 7, 15, 16 | 1]:
    put("discovery_lxd", str(mode), bytes([mode]) + lxd.encode())
