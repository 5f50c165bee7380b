/**
 * Help texts. Every command has `coapkit <command> --help`.
 */
import { EXIT_TABLE } from './exit.js';
import { RELIABLE_SERVE_HELP } from './serve-reliable.js';

export const METHODS = ['get', 'post', 'put', 'delete', 'fetch', 'patch', 'ipatch'] as const;

const exitTable = EXIT_TABLE.map(([code, text]) => `  ${String(code).padStart(3)}  ${text}`).join('\n');

export const MAIN_HELP = `coapkit - a CoAP (RFC 7252) toolkit: client, discovery, ping and a server

Usage:
  coapkit <method> URI [options]     send a request (methods: ${METHODS.join(', ')})
  coapkit -m <method> URI [options]  the same, as coap-client writes it (or curl's -X;
                                     no method: GET, or POST with -d as curl does)
  coapkit observe URI [--count N]    observe a resource (RFC 7641), one line per notification
  coapkit discover URI [filters]     list a server's resources (/.well-known/core)
  coapkit ping URI [--count N]       CoAP ping (empty CON, expects RST)
  coapkit serve [--port N]           run a server with dynamic resources
  coapkit console [--port 8080]      a CoAP browser in a web page (CoAP over WebSockets)
  coapkit dissect FILE [--psk S]     the life of every message in a pcap/pcapng capture
  coapkit demo                       the life of a CoAP message, traced on this machine
  coapkit <command> --trace[=json]   print every layer (DNS, DTLS, CoAP) on stderr
  coapkit <command> --help           help for one command
  coapkit --version

Examples:
  coapkit get coap://127.0.0.1/time
  coapkit put coap://127.0.0.1/greeting -p hello -t text
  coapkit -m put -e hello coap://127.0.0.1/greeting          (libcoap's coap-client flags)
  coapkit post coap://127.0.0.1/log -f reading.json -t json
  coapkit discover coap://127.0.0.1 --rt temperature
  coapkit get coaps://device.local/secret --identity me --psk-file key.txt

Exit status:
${exitTable}

Errors are printed on stderr as "coapkit: <message>", often followed by a hint.
`;

export const REQUEST_HELP = `Usage: coapkit <method> URI [options]
       coapkit -m <method> URI [options]     (coap-client; -X METHOD as curl)
       coapkit URI [options]                 (GET; POST when -d/--data is given, as curl)
  method: ${METHODS.join(' | ')}

Sends one request and writes the response payload to stdout (raw bytes; a
newline is added only when stdout is a terminal and the payload is text).
A non-2.xx response is reported on stderr with its diagnostic payload.
The flags of libcoap's coap-client work as written there (-m -e -f -b -B -k -u
-N -O -T -s -t -A -o), except -p (libcoap: local port; here: the payload; a
port-like "-p 5683" on get/delete is refused: use --local-port) and -v NUM.

Method (instead of the method command; must agree with it when both are given):
  -m, --method METHOD         ${METHODS.join(', ')} (any case)
  -X, --request METHOD        the same, as curl writes it
Payload (one of; a GET or DELETE with a payload gets a warning on stderr):
  -p, --payload TEXT          request payload: UTF-8 text, or @FILE, or @- for stdin (curl);
                              text that starts with @ goes with -e
  -d, --data TEXT             the same (curl); without a method it makes the request a POST
      --data-binary TEXT      the same (curl)
  -e, --text TEXT             payload text with %XX decoded (libcoap -e: -e caf%C3%A9)
  -f, --file FILE             request payload from a file ("-" reads stdin)
  -t, --content-format CF     Content-Format: name (json, text, cbor, link...), media type
                              (application/json) or number (50)
  -A, --accept CF             Accept option (same forms as -t)
Options:
  -O, --option NUM[,VALUE]    add an option (repeatable). NUM is a number or a name
                              (Uri-Query, If-Match, ...); VALUE follows the option's format:
                              uint: decimal, string: text, opaque: text or 0xHEX
                              (unregistered options: 0xHEX or text);
                              NUM alone adds an empty option (e.g. -O If-None-Match)
  -N, --non                   send a Non-confirmable request
  -B, --timeout SECONDS       give up after this long, every block of a block-wise transfer
                              included (default: CoAP retransmission, ~93 s per round trip)
  -T, --token TOKEN           request token: text byte for byte (as libcoap) or 0xHEX;
                              at most 8 bytes (default: 8 random bytes)
  -b, --block-size N          block size for block-wise transfers (RFC 7959): 16..1024, a
                              power of two (default 1024; libcoap's "-b 0,N" is accepted);
                              large payloads and responses are always transferred
                              block-wise, with a progress bar on a terminal
      --max-body BYTES        largest response body accepted (default 16777216 = 16 MiB);
                              a larger Size2 or more bytes stop the transfer: error, exit 3
      --observe               (get) observe the resource: see 'coapkit observe --help'
  -s, --duration SECONDS      (get) observe for this long, as coap-client -s does
  -n, --count N               (get) observe until N notifications
      --local-port N          local UDP port (libcoap's -p); without it each server gets
                              a connected socket, so a closed port fails at once
      --local-address ADDR    local address to send from (libcoap's -a)
      --repeat N              send the request N times, one after another, over one endpoint
                              (one DTLS session for coaps://); each response printed as
                              usual; a request without an answer is reported and the next
                              one goes on (over coaps:// after a fresh handshake); the exit
                              status is that of the first failure
      --interval MS           pause between the requests of --repeat (default 0)
Group requests (URI host is a multicast address, RFC 7252 §8.2): one NON request,
then every member's response is printed as "# CODE from coap://SOURCE" + payload:
      --window SECONDS        how long to collect responses (default 6 = leisure 5 s + 1)
      --multicast-interface I IPv4 address (224.x groups) or interface name (ff0X:: groups)
      --multicast-ttl N       IP TTL / hop limit (default 1: this link only)
      (exit 3 when no member answered: members stay silent for errors)
Output:
  -o, --output FILE           write the payload to FILE instead of stdout ("-": stdout, as
                              libcoap); checked before sending: exit 73 when it cannot be
                              created (missing folder, no permission)
  -i, --include               print the response code and options, an empty line, then the
                              body on stdout, for any code (curl -i)
      --fail                  on 4.xx/5.xx print only the code on stderr, never the body
                              (curl -f; without -i the body never goes to stdout anyway)
  -v, --verbose               request and response header, options and timing on stderr
  -q, --quiet                 print nothing on stderr for non-2.xx responses, no warnings
Security (coaps:// URIs, DTLS 1.2 with a pre-shared key):
  -u, --identity ID           PSK identity (or env COAPKIT_PSK_IDENTITY)
  -k, --psk SECRET            key as UTF-8 text
      --psk-hex HEX           key as hex
      --psk-file FILE         key read from FILE (raw bytes, or one line "0xHEX")
                              env COAPKIT_PSK (text, or 0x-prefixed hex) keeps it out of
                              shell history
Security with certificates (coaps://, DTLS 1.2 ECDHE_ECDSA, P-256; libcoap's -c/-j/-C/-M):
  -c, --cert FILE             our certificate (PEM; may hold the chain, leaf first)
  -j, --key FILE              its private key (PEM, ECDSA P-256)
  -C, --ca FILE               CA certificate(s) the server's certificate must chain to (it
                              must also name the URI's host); without it the server's
                              certificate is not checked (a note on stderr says so)
  -M, --rpk FILE              raw public key mode (RFC 7250): our P-256 private key (PEM)
      --rpk-trust FILE        server keys we accept: SHA-256 fingerprints of their
                              SubjectPublicKeyInfo (hex, one per line) or PEM keys;
                              default any key
TLS (coaps+tcp:// and coaps+ws:// URIs, RFC 8323; -u/-k above give TLS 1.2 PSK):
      --cert/--key/--ca       as above (--ca default: the system's CAs)
      --insecure              do not verify the server certificate
NAT rebinding (coaps://):
      --cid                   offer a DTLS Connection ID (RFC 9146): the session survives a
                              NAT giving us a new address or port, without a new handshake
                              (off by default: the CID is sent in the clear and links our
                              traffic across address changes)
End-to-end protection (OSCORE, RFC 8613; coap:// or coaps://, also through proxies):
      --oscore FILE           security context in aiocoap's JSON format: secret_hex (or
                              secret_ascii), salt_hex, sender-id_hex, recipient-id_hex
                              (or _ascii), id-context_hex, algorithm (default
                              "AES-CCM-16-64-128"), kdf-hashfun (default "sha256"); the
                              sequence number is kept in FILE.seq (never reused)

Examples:
  coapkit get coap://[::1]/sensors/temp -A json -v
  echo '{"on":true}' | coapkit put coap://10.0.0.7/light -t json -f -
  coapkit get coap://host/items -O Uri-Query,limit=5 -o items.json
  coapkit get coap://224.0.1.187/time --window 2
  coapkit -m put -T cafe -t binary -f to_upload coap://[::1]/ck      (coap-client's own)
  coapkit -X POST -d @reading.json -t json coap://host/log -i --fail (curl's)

Exit status: 0 for 2.xx, 1 for 4.xx, 2 for 5.xx, 3 timeout/network/protocol error (a body
over --max-body, a malformed block, 2.31 Continue to the last block), 64 usage, 66 no input,
73 the -o FILE cannot be created (missing folder, no permission), 74 output error (stdout
or -o FILE cannot be written: disk full...), 130 an observation stopped by Ctrl-C.
`;

export const DISCOVER_HELP = `Usage: coapkit discover URI [options]

GETs /.well-known/core (RFC 6690) from the URI's host (or the URI's own path
when it has one) and prints one link per line with its attributes.

Filters (sent to the server as Uri-Query per RFC 6690 §4.1 and applied locally;
a trailing * matches a prefix; no match prints nothing and exits 0):
      --rt VALUE              resource type
      --if VALUE              interface description
      --ct N                  content format (number or name)
      --href VALUE            link target
Output:
      --json                  print a JSON array of {href, attribute: value...}
  -v, --verbose               request/response details on stderr
Other: -B/--timeout SECONDS, -N/--non, --local-port N, --local-address ADDR, the
coaps:// key flags of 'coapkit get --help' (-u ID -k KEY), --oscore FILE (OSCORE).

Group discovery: with a multicast URI (coap://224.0.1.187, coap://[ff02::fd%25eth0])
one NON request goes to the group and each responder's links are listed under its
source address (--json: [{source, links}]); --window SECONDS (default 6),
--multicast-interface, --multicast-ttl as in 'coapkit get --help'.

Examples:
  coapkit discover coap://127.0.0.1 --rt 'temp*'
  coapkit discover coap://224.0.1.187 --rt temperature --window 3
`;

export const PING_HELP = `Usage: coapkit ping URI [options]

Sends a CoAP ping (an empty Confirmable message); a live CoAP endpoint answers
with a Reset. Over coap+tcp://, coaps+tcp://, coap+ws:// and coaps+ws:// (RFC 8323)
it is a 7.02 Ping answered by a 7.03 Pong. Prints the round-trip time of each ping.

  -c, --count N               number of pings (default 1)
  -i, --interval SECONDS      wait between pings (default 1)
  -B, --timeout SECONDS       per-ping timeout (default 5)
  -q, --quiet                 only the summary
Coaps:// key and certificate flags as for 'coapkit get --help' (-u ID -k KEY, --cert FILE
-j KEY -C CA, -M RPK; -c is --count here); --insecure for coaps+tcp:// and coaps+ws://.

A closed port (ICMP port unreachable) fails that ping at once, as get does.
Exit status: 0 when at least one ping got its Reset (or Pong), 3 otherwise.
`;

export const SERVE_HELP = `Usage: coapkit serve [options]

Runs a CoAP server with dynamic resources (like libcoap's coap-server -d):
  PUT /path      creates (2.01) or replaces (2.04) a resource, keeping its Content-Format;
                 honours If-Match / If-None-Match (4.12 when they fail)
  GET /path      2.05 with Content-Format, ETag, Max-Age; 2.03 when the ETag matches;
                 4.06 when Accept does not match
  POST /path     appends an entry /path/N to a collection (2.01 + Location-Path)
  DELETE /path   removes it (2.02)
  GET /.well-known/core   lists resources with ct, sz, title, obs (one filter: ?ct=, ?href=...)
Every dynamic resource is observable (RFC 7641: GET with Observe=0 gets a notification
on each change, 4.04 when deleted); bodies above one datagram go block-wise (RFC 7959).
Built in: /  (about), /time (current time, observable: ticks every second),
          /echo (POST/PUT: 2.04 Changed with the payload echoed).

Listening:
      --host ADDR             address to bind (default :: dual-stack, else 0.0.0.0); a
                              name (localhost) binds every address it resolves to
      --port N                UDP port for coap:// (default 5683; 0 = any free port)
      --secure-port N         UDP port for coaps:// (default 5684; needs a key below)
      --handshake-rate N|off  full DTLS handshakes a client address may start a second,
                              in PSK handshakes (a certificate one counts 2, a mutual one
                              4; burst 6 N; default 10); behind a load balancer that
                              hides client addresses (nginx), raise it or say off (only
                              the global bound of 1,500 a second is left)
Group communication (RFC 7252 §8):
      --multicast             also answer requests sent to the All CoAP Nodes group
                              224.0.1.187 (plus ff02::fd and ff05::fd with an interface
                              name below) on port 5683: NON only, after a random delay
                              within the leisure, never for errors or empty results,
                              rate- and size-limited. Without --host the unicast side
                              binds each local address (a wildcard socket on the group
                              port would receive the multicast requests too)
      --multicast-interface I IPv4 address or interface name to join the groups on
      --multicast-group ADDR  join this group instead (repeatable)
      --multicast-port N      group port (default 5683)
      --leisure SECONDS       leisure before a multicast response (default 5)
${RELIABLE_SERVE_HELP}Keys (enable coaps://, DTLS 1.2 PSK):
      --identity ID --psk SECRET   one identity and key (text; or --psk-hex HEX)
      --psk-file FILE         many keys: lines "identity:secret" or "identity:0xHEX",
                              "#" starts a comment
      --generate-psk          no key given: make a random one for this run and print it
                              (identity "coapkit", or --identity ID; what npm start does;
                              the server stays open to every peer)
Certificates (enable coaps:// with DTLS 1.2 ECDHE_ECDSA, P-256; PSK keys may be given too):
  -c, --cert FILE -j, --key FILE   our certificate (PEM, chain leaf first) and its key
  -C, --ca FILE               CA certificate(s): clients must present a certificate that
                              chains to one of them (mutual authentication); without
                              --ca client certificates are not asked for
  -M, --rpk FILE              raw public key mode (RFC 7250): our P-256 private key (PEM);
                              a client is identified by its key's SHA-256 fingerprint
      --rpk-trust FILE        client keys accepted in raw public key mode: fingerprints
                              (hex, one per line) or PEM keys; default any key
      --generate-cert DIR     write a throwaway CA, a server and a client certificate
                              (with keys) into DIR, serve with them and print the client
                              command; an existing complete DIR is reused
Access control (who may do what):
      --acl FILE              rules, one per line: [allow|deny] IDENTITY METHODS PATH
                              IDENTITY: a PSK identity, certificate CN or raw key's
                              SHA-256 hex (or "quoted"), oscore:KID (an OSCORE client's
                              Sender ID, hex), * = any authenticated peer,
                              anonymous = plain coap://; METHODS: GET,PUT,... or *
                              (observe = GET); PATH: /a/b, {identity}, * = one segment,
                              trailing /** = the path and everything below; # comments.
                              First match wins; no match: 4.03 (4.01 to an anonymous peer
                              where an authenticated one would be allowed). Observe
                              registrations and /.well-known/core follow the rules
                              Example: * GET,PUT,POST,DELETE /devices/{identity}/**
      --anonymous-writes      with keys given and no --acl, anonymous peers may only read
                              (GET, FETCH, observe, discovery) and authenticated peers
                              read and write: this lets anonymous peers write again
      DTLS Connection IDs (RFC 9146) are answered with a random 8-byte CID: a client that
      offers one keeps its session when its address or port changes (a NAT rebinding)
Cluster (several nodes behind a UDP load balancer, docs/cluster.md):
      --node-id N             this node's id 1..255: the first byte of its DTLS CIDs
      --cluster-listen IP:PORT where the other nodes reach this one (a private address)
      --peer ID=IP:PORT       another node (repeatable); a CID record of another node is
                              forwarded to it and its answers go back the same way
OSCORE (RFC 8613, end-to-end protection, also through proxies):
      --oscore FILE           a client's security context (aiocoap's JSON format, from
                              the server's side: sender-id is the server's ID); repeatable,
                              one file per client; sequence number kept in FILE.seq, or
                              with --data/--store in the store (ranges reserved atomically:
                              servers sharing one store and context never repeat a Partial
                              IV; an existing FILE.seq is the floor, then marked as moved;
                              with --store every response has its own Partial IV; 5.03 +
                              Max-Age if a range runs out before the next is stored)
      --oscore-required PATH  only OSCORE requests may reach PATH ("/secure/**": it and
                              below, "/**": everything); others get 4.02 (repeatable)
Limits:
      --max-resources N       most dynamic resources (default 1000; then 5.03)
      --max-size BYTES        largest representation, uploads included (default
                              4194304 = 4 MiB; then 4.13 + Size1)
      --max-store-bytes BYTES all paths and payloads together, plus 256 bytes per
                              resource (default 67108864 = 64 MiB; then 5.03)
      --max-age SECONDS       Max-Age of GET responses (default 60)
Durable state (resources and coap:// observers survive a restart, a crash included):
      --data DIR              keep them in DIR/coapkit.db (SQLite, WAL; DIR is created;
                              node:sqlite on Node 22.13+/24, else the better-sqlite3
                              package); a write is answered 2.xx once it is on disk,
                              5.03 when it cannot be stored (disk full); reads are served
                              from memory. A file that is not a coapkit database is refused
                              and left as it is; one server per directory
      --store URL             keep them in PostgreSQL (postgres://user:pw@host:port/db,
                              the pg package); several servers may share one database:
                              a change through one notifies the observers of all. While
                              the database is unreachable writes get 5.03 and the server
                              reconnects
      --state-key FILE        with --data/--store: on SIGTERM the established DTLS sessions
                              are saved sealed with this key (16+ bytes; or env
                              COAPKIT_STATE_KEY) and taken over at the next start, so
                              coaps:// clients go on without a new handshake (after a
                              crash they handshake again)
Processes:
      --workers N|auto        N processes share the ports (SO_REUSEPORT; auto = one per
                              CPU; default 1). Needs Node 22.12+ (refused on Node 20). The
                              kernel sends each peer (address and port) to one worker, so its
                              duplicates, DTLS session and observations stay there; the
                              stored resources are per worker too, unless --store shares
                              them (PostgreSQL; --data is refused). A supervisor restarts a
                              worker that dies and stops them all on SIGINT/SIGTERM; with -v
                              each request line ends with [worker PID]. Not with --multicast;
                              with --oscore only with --store
Other:
  -q, --quiet                 no startup banner
  -v, --verbose               one line per request on stdout (method, path, peer, result, time)
                              and per failed DTLS handshake (peer, identity, alert; at most
                              10/s, 3/s per address, then "suppressed K similar lines");
                              text from peers is escaped (\\n, \\xHH, \\uHHHH, \\\\)

Prints the listening URLs at startup; stops cleanly on Ctrl-C (SIGINT) or SIGTERM.
Exit status: 0 after a signal, 3 when a port cannot be bound, 64 usage,
74 when stdout cannot be written (the -v log or the banner).
`;

export const CONSOLE_HELP = `Usage: coapkit console [--port 8080] [--host ADDR]

Starts a local web page, a CoAP browser: enter a coap:// or coaps:// URI (for
coaps:// a PSK identity and key, a client certificate, key and CA, or a raw
public key and trusted server keys: PEM pasted or read from a file in the page;
coap+tcp://, coap+ws:// and their TLS forms coaps+tcp://, coaps+ws:// work too,
TLS checked against the certificate fields' CA, else the system's CAs), discover
/.well-known/core as a tree, send
GET/POST/PUT/DELETE/FETCH with a payload and Content-Format, observe a resource
(notifications arrive live), upload a file or save a body (block-wise, with a
progress bar), and see each request's life as a ladder diagram (page, proxy,
server: DNS, DTLS flights, CON/ACK, retransmissions, separate responses, timings)
drawn from the diagnostics events --trace prints.

The page speaks CoAP over WebSockets (RFC 8323, subprotocol "coap") to
ws://HOST:PORT/.well-known/coap; this process forwards each request to its
Proxy-Uri and does the block-wise transfers. Needs the optional package ws.

      --port N                HTTP port (default 8080; 0 = any free port)
      --host ADDR             address to listen on (default 127.0.0.1). Loopback
                              needs no token but answers only to a loopback Host
                              header and a same-origin WebSocket (no DNS rebinding,
                              no cross-site use); any other address gets a token,
                              printed at startup in the page URL (?token=...), that
                              the WebSocket must carry
      --token TOKEN           use this token (16-128 of A-Z a-z 0-9 _ -) instead of a
                              random one
  -q, --quiet                 no startup banner

Prints the page URL at startup; stops on Ctrl-C (SIGINT) or SIGTERM.
Exit status: 0 after a signal, 3 when the port cannot be bound, 64 usage.
`;
