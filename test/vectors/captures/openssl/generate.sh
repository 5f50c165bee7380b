#!/bin/bash
# Regenerates one capture: OpenSSL s_client sends one CoAP message
# (CON POST /x, MID 4660, token ab, payload "hello\n") over DTLS 1.2 PSK to
# s_server on loopback, captured with dumpcap. Needs root (capture on lo).
#   ./generate.sh PSK-AES128-CCM8 15701 psk_ccm8.pcapng
#   OPENSSL_CONF=$PWD/no-ems.cnf ./generate.sh PSK-AES128-GCM-SHA256 15702 psk_gcm_no_ems.pcapng
#   ./generate.sh ECDHE-PSK-CHACHA20-POLY1305 15703 ecdhe_psk_chacha20.pcapng   (writes the key log too)
set -eu
CIPHER=$1; PORT=$2; OUT=$3
KEYHEX=$(echo -n secretPSK | xxd -ps -c 64)
rm -f "$OUT" "${OUT%.pcapng}.keylog"
dumpcap -i lo -f "udp port $PORT" -w "$OUT" -q &
DPID=$!
sleep 1.5
(sleep 4) | openssl s_server -dtls1_2 -psk "$KEYHEX" -psk_hint srv-hint -nocert -cipher "$CIPHER" -accept "$PORT" -quiet &
SPID=$!
sleep 0.7
( printf '\x41\x02\x12\x34\xab\xb1x\xffhello\n'; sleep 1.5 ) |
  timeout 5 openssl s_client -dtls1_2 -psk "$KEYHEX" -psk_identity dev-1 -cipher "$CIPHER" \
    -connect "127.0.0.1:$PORT" -keylogfile "${OUT%.pcapng}.keylog" -quiet || true
sleep 0.5
kill "$SPID" 2>/dev/null || true
sleep 0.5
kill "$DPID" 2>/dev/null || true
wait "$DPID" 2>/dev/null || true
