#!/usr/bin/env bash
# Makes this host a drydock workspace node: joins its Docker engine to the master's swarm as a
# worker and, optionally, exposes the engine over TCP with TLS for the master. Run it as root
# on the new host, which has Docker installed:
#
#   scripts/swarm-add-node.sh JOIN_TOKEN MANAGER_ADDRESS[:PORT] [--advertise-addr ADDR] [--tls DIR]
#
#   JOIN_TOKEN       on the manager: docker swarm join-token -q worker
#   MANAGER_ADDRESS  the manager as this host reaches it; port 2377 unless given
#   --advertise-addr the address the other nodes reach this one at (when it has several)
#   --tls DIR        DIR holds ca.pem, server-cert.pem and server-key.pem made for this host
#                    (below): the engine then also listens on tcp://0.0.0.0:2376 with
#                    --tlsverify, so only clients with a certificate of that CA get in.
#
# Between the hosts, open 2377/tcp (to managers), 7946/tcp+udp and 4789/udp (all nodes), and
# 2376/tcp from the master when the engine is exposed.
#
# The certificates, made on the master with openssl (the CA key never leaves it):
#
#   # Once: the CA, and the master's client certificate (cert.pem, key.pem).
#   openssl genrsa -out ca-key.pem 4096
#   openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -subj "/CN=drydock engines CA" -out ca.pem
#   openssl genrsa -out key.pem 4096
#   openssl req -new -key key.pem -subj "/CN=drydock master" -out client.csr
#   echo "extendedKeyUsage=clientAuth" > client.ext
#   openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days 825 \
#       -extfile client.ext -out cert.pem
#   # Per node: a server certificate for every name and address the master uses for it.
#   openssl genrsa -out server-key.pem 4096
#   openssl req -new -key server-key.pem -subj "/CN=node1.example.com" -out server.csr
#   printf 'subjectAltName=DNS:node1.example.com,IP:192.0.2.11\nextendedKeyUsage=serverAuth\n' > server.ext
#   openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days 825 \
#       -extfile server.ext -out server-cert.pem
#   # Copy ca.pem, server-cert.pem and server-key.pem to the node. From the master (its
#   # DOCKER_CERT_PATH holding ca.pem, cert.pem, key.pem):
#   #   DOCKER_HOST=tcp://node1.example.com:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=. docker info
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
say() { echo "swarm-add-node: $*"; }
run() {
    say "running: $*"
    "$@"
}

[ $# -ge 2 ] || usage
token=$1
manager=$2
shift 2
advertise=""
tls_dir=""
while [ $# -gt 0 ]; do
    case $1 in
    --advertise-addr) advertise=${2:?--advertise-addr needs an address}; shift 2 ;;
    --tls) tls_dir=${2:?--tls needs a directory}; shift 2 ;;
    *) usage ;;
    esac
done
case $manager in *:*) ;; *) manager="$manager:2377" ;; esac

command -v docker >/dev/null || { say "docker is not installed: install Docker first"; exit 1; }
state=$(docker info --format '{{.Swarm.LocalNodeState}}') || { say "the Docker engine does not answer"; exit 1; }
if [ "$state" != inactive ]; then
    say "this engine is already in a swarm (state $state): leave it first with: docker swarm leave"
    exit 1
fi
say "Docker $(docker version --format '{{.Server.Version}}') on $(hostname), in no swarm"

if [ -n "$tls_dir" ]; then
    for f in ca.pem server-cert.pem server-key.pem; do
        [ -r "$tls_dir/$f" ] || { say "$tls_dir/$f is missing"; exit 1; }
    done
    command -v systemctl >/dev/null || {
        say "no systemd: start dockerd yourself with: -H tcp://0.0.0.0:2376 --tlsverify" \
            "--tlscacert /etc/docker/tls/ca.pem --tlscert /etc/docker/tls/server-cert.pem" \
            "--tlskey /etc/docker/tls/server-key.pem"
        exit 1
    }
    run install -d -m 0700 /etc/docker/tls
    run install -m 0444 "$tls_dir/ca.pem" "$tls_dir/server-cert.pem" /etc/docker/tls/
    run install -m 0400 "$tls_dir/server-key.pem" /etc/docker/tls/
    dropin=/etc/systemd/system/docker.service.d/drydock-tls.conf
    if [ -e "$dropin" ]; then
        run rm "$dropin"
        run systemctl daemon-reload
    fi
    # The unit's own command line, plus the TCP socket: flags, not daemon.json, since "hosts"
    # there conflicts with the unit's -H fd://.
    exec_start=$(systemctl show docker.service -p ExecStart --value | sed -n 's/.*argv\[\]=\([^;]*\) ;.*/\1/p')
    [ -n "$exec_start" ] || { say "cannot read docker.service's ExecStart"; exit 1; }
    say "writing $dropin"
    mkdir -p "$(dirname "$dropin")"
    cat >"$dropin" <<EOF
# Written by drydock's swarm-add-node.sh: the engine also listens on TCP, TLS-verified.
[Service]
ExecStart=
ExecStart=$exec_start -H tcp://0.0.0.0:2376 --tlsverify --tlscacert /etc/docker/tls/ca.pem --tlscert /etc/docker/tls/server-cert.pem --tlskey /etc/docker/tls/server-key.pem
EOF
    run systemctl daemon-reload
    run systemctl restart docker
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null || { say "the engine did not come back: see journalctl -u docker"; exit 1; }
    say "the engine listens on tcp://0.0.0.0:2376 (TLS, client certificates of $tls_dir/ca.pem only)"
fi

join=(docker swarm join --token "$token")
[ -z "$advertise" ] || join+=(--advertise-addr "$advertise")
# The token is a secret: shown shortened.
say "running: docker swarm join --token ${token:0:16}… ${advertise:+--advertise-addr $advertise }$manager"
"${join[@]}" "$manager"
say "joined as worker node $(docker info --format '{{.Swarm.NodeID}}'); on the manager, docker node ls lists it"
