#!/usr/bin/env bash
# Bring up the lab rack (root): a real Kubernetes control plane on the lab bridge and one
# network-namespace host with a real OpenSSH server per node of Pulumi.lab.yaml (plus spare
# hosts). See lab/README-interface.md for what it provides; lab/lab-down.sh removes it all.
# Starts from a clean slate (runs lab-down first); on failure it tears down what it made unless
# HOMELAB_LAB_KEEP_ON_FAILURE=1.
set -euo pipefail
# shellcheck source=lab/lab-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"

[[ $EUID -eq 0 ]] || die "lab-up needs root (network namespaces, bridge, mounts)"
for tool in ip unshare setsid ssh ssh-keygen ssh-agent ssh-add openssl curl mmdebstrap systemd-nspawn; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] ||
        die "$tool not found (apt-get install iproute2 util-linux openssh-client openssl curl mmdebstrap systemd-container)"
done
[[ -x "$LAB_PYTHON" ]] || die "no python at $LAB_PYTHON (make venv)"

start=$SECONDS
bin="$("$lab_here/build.sh")"
rootfs="$("$lab_here/rootfs.sh")"
"$lab_here/lab-down.sh" >/dev/null

lab_ok=0
on_exit() {
    local rc=$?
    ((lab_ok == 0)) || return 0
    ((rc != 0)) || rc=1
    log "lab-up failed (exit $rc); logs in $LAB_RUN and $LAB_HOSTS_DIR/*/"
    for f in "$LAB_RUN"/*.log; do
        [[ -f "$f" ]] || continue
        log "--- tail of $f"
        tail -n 15 "$f" >&2 || true
    done
    if [[ "${HOMELAB_LAB_KEEP_ON_FAILURE:-}" != 1 ]]; then
        "$lab_here/lab-down.sh" >&2 || true
    fi
    exit "$rc"
}
trap on_exit EXIT

hosts_text="$(lab_hosts)" || die "cannot list the lab hosts"
mapfile -t hosts <<<"$hosts_text"
((${#hosts[@]} > 0)) || die "no hosts in $LAB_STACK"
server_ips=()
server_names=()
for h in "${hosts[@]}"; do
    read -r name addr role _ <<<"$h"
    [[ "$addr" == "$LAB_SUBNET_PREFIX"* && "$addr" != "$LAB_BRIDGE_ADDR" ]] ||
        die "host $name: address $addr is not in ${LAB_SUBNET_PREFIX}0/$LAB_PREFIX_LEN"
    [[ "$role" == server || "$role" == agent ]] || die "host $name: role $role"
    if [[ "$role" == server ]]; then
        server_ips+=("$addr")
        server_names+=("$name")
    fi
done
domain="$("$LAB_PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["config"]["homelab:rack"].get("domain", "lab.test"))' "$LAB_STACK")"

mkdir -p "$LAB_RUN" "$LAB_PKI" "$LAB_HOSTS_DIR" "$LAB_ETCD_DATA" "$LAB_DATASTORE"
chmod 0700 "$LAB_DATASTORE"
echo "$bin" >"$LAB_RUN/bin"
echo "$rootfs" >"$LAB_RUN/rootfs"
chmod 0700 "$LAB_DIR" "$LAB_PKI"

# --- certificates ------------------------------------------------------------------------
# One CA signs the API server's serving cert and every client cert; the service-account key
# pair signs ServiceAccount tokens. ECDSA P-256 keys (fast), valid 30 days.
pki() { openssl "$@" 2>/dev/null; }
pki ecparam -name prime256v1 -genkey -noout -out "$LAB_PKI/ca.key"
pki req -x509 -new -key "$LAB_PKI/ca.key" -sha256 -days 30 -subj "/CN=homelab-lab-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$LAB_PKI/ca.crt"
# cert NAME SUBJECT EXTENDED_USAGE [SANS]
cert() {
    local name="$1" subj="$2" eku="$3" sans="${4:-}" ext
    ext="$LAB_PKI/$name.ext"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [[ -z "$sans" ]] || echo "subjectAltName=$sans"
    } >"$ext"
    pki ecparam -name prime256v1 -genkey -noout -out "$LAB_PKI/$name.key"
    pki req -new -key "$LAB_PKI/$name.key" -subj "$subj" -out "$LAB_PKI/$name.csr"
    pki x509 -req -in "$LAB_PKI/$name.csr" -CA "$LAB_PKI/ca.crt" -CAkey "$LAB_PKI/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$LAB_PKI/$name.crt"
    rm -f "$LAB_PKI/$name.csr" "$ext"
}
sans="IP:127.0.0.1,IP:$LAB_BRIDGE_ADDR,IP:$LAB_SERVICE_API_IP,DNS:localhost,DNS:kubernetes"
sans+=",DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
for ip in "${server_ips[@]}"; do sans+=",IP:$ip"; done
for n in "${server_names[@]}"; do sans+=",DNS:$n,DNS:$n.$domain"; done
cert apiserver "/CN=kube-apiserver" serverAuth "$sans"
cert admin "/O=system:masters/CN=lab-admin" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kwok "/O=system:masters/CN=lab-kwok" clientAuth
# Front proxy (aggregation layer) CA: lets the controllers' delegated authentication find the
# request-header CA instead of logging its absence.
pki ecparam -name prime256v1 -genkey -noout -out "$LAB_PKI/front-proxy-ca.key"
pki req -x509 -new -key "$LAB_PKI/front-proxy-ca.key" -sha256 -days 30 -subj "/CN=homelab-lab-front-proxy-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$LAB_PKI/front-proxy-ca.crt"
pki ecparam -name prime256v1 -genkey -noout -out "$LAB_PKI/front-proxy-client.key"
pki req -new -key "$LAB_PKI/front-proxy-client.key" -subj "/CN=front-proxy-client" -out "$LAB_PKI/fp.csr"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$LAB_PKI/fp.ext"
pki x509 -req -in "$LAB_PKI/fp.csr" -CA "$LAB_PKI/front-proxy-ca.crt" -CAkey "$LAB_PKI/front-proxy-ca.key" \
    -CAcreateserial -days 30 -sha256 -extfile "$LAB_PKI/fp.ext" -out "$LAB_PKI/front-proxy-client.crt"
rm -f "$LAB_PKI/fp.csr" "$LAB_PKI/fp.ext"
pki genrsa -out "$LAB_PKI/sa.key" 2048
pki rsa -in "$LAB_PKI/sa.key" -pubout -out "$LAB_PKI/sa.pub"

# kubeconfig FILE SERVER CERT_NAME: self-contained (certs embedded), so it can be copied.
kubeconfig() {
    local file="$1" server="$2" name="$3"
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 <"$LAB_PKI/ca.crt")
    server: $server
  name: lab
contexts:
- context:
    cluster: lab
    user: $name
  name: lab
current-context: lab
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$LAB_PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$LAB_PKI/$name.key")
EOF
    chmod 0600 "$file"
}
for c in admin controller-manager scheduler kwok; do
    kubeconfig "$LAB_PKI/$c.kubeconfig" "$LAB_API_URL" "$c"
done
cp "$LAB_PKI/admin.kubeconfig" "$LAB_DIR/admin.kubeconfig"

# --- bridge --------------------------------------------------------------------------------
ip link add "$LAB_BRIDGE" type bridge
# Bridged traffic between lab hosts must not go through the machine's iptables FORWARD chain
# (br_netfilter; dockerd sets its policy to DROP). Per-bridge, touches nothing else.
ip link set "$LAB_BRIDGE" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0
ip addr add "$LAB_BRIDGE_ADDR/$LAB_PREFIX_LEN" dev "$LAB_BRIDGE"
ip link set "$LAB_BRIDGE" up

# --- control plane ---------------------------------------------------------------------------
# daemon NAME BINARY ARGS...: started in its own session, pid + binary path recorded.
daemon() {
    local name="$1" exe="$2"
    shift 2
    setsid "$exe" "$@" </dev/null >"$LAB_RUN/$name.log" 2>&1 &
    echo "$! $exe" >"$LAB_RUN/$name.pid"
}
wait_healthy() {
    local name="$1" url="$2"
    shift 2
    for _ in $(seq 600); do
        if curl -fsS --max-time 2 "$@" "$url" >/dev/null 2>&1; then
            log "$name healthy after $((SECONDS - start)) s"
            return 0
        fi
        read -r pid _ <"$LAB_RUN/$name.pid"
        alive "$pid" || die "$name exited (log: $LAB_RUN/$name.log)"
        sleep 0.2
    done
    die "$name not healthy at $url (log: $LAB_RUN/$name.log)"
}

daemon etcd "$bin/etcd" --name lab --data-dir "$LAB_ETCD_DATA" \
    --listen-client-urls "http://$LAB_ETCD_CLIENT" --advertise-client-urls "http://$LAB_ETCD_CLIENT" \
    --listen-peer-urls "http://$LAB_ETCD_PEER" --initial-advertise-peer-urls "http://$LAB_ETCD_PEER" \
    --initial-cluster "lab=http://$LAB_ETCD_PEER" --initial-cluster-state new \
    --listen-metrics-urls "" --unsafe-no-fsync --log-level warn
wait_healthy etcd "http://$LAB_ETCD_CLIENT/health"

daemon kube-apiserver "$bin/kube-apiserver" \
    --bind-address "$LAB_BRIDGE_ADDR" --advertise-address "$LAB_BRIDGE_ADDR" --secure-port "$LAB_API_PORT" \
    --etcd-servers "http://$LAB_ETCD_CLIENT" \
    --client-ca-file "$LAB_PKI/ca.crt" \
    --tls-cert-file "$LAB_PKI/apiserver.crt" --tls-private-key-file "$LAB_PKI/apiserver.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$LAB_PKI/sa.pub" --service-account-signing-key-file "$LAB_PKI/sa.key" \
    --service-cluster-ip-range "$LAB_SERVICE_CIDR" \
    --requestheader-client-ca-file "$LAB_PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$LAB_PKI/front-proxy-client.crt" --proxy-client-key-file "$LAB_PKI/front-proxy-client.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1

# Hosts come up while the API server starts.
known="$LAB_DIR/known_hosts"
: >"$known"
ssh-keygen -q -t ed25519 -N "" -C "homelab-lab" -f "$LAB_DIR/id_ed25519"
ssh_pub="$(cat "$LAB_DIR/id_ed25519.pub")"
pi_ids="$(awk -F: '$1 == "pi" { print $3 ":" $4 }' "$rootfs/etc/passwd")"
[[ -n "$pi_ids" ]] || die "no user pi in $rootfs/etc/passwd"
hosts_json="["
for h in "${hosts[@]}"; do
    read -r name addr role cpu memory storage <<<"$h"
    ns="$(ns_of "$name")"
    veth="$(veth_of "$addr")"
    hd="$LAB_HOSTS_DIR/$name"
    up="$hd/upper"
    mkdir -p "$up" "$hd/work"
    chmod 0755 "$hd" "$up"
    # A directory of the host's disk, created in the upper dir with the owner and mode the root
    # filesystem gives it (an upper dir's metadata is what the host sees).
    host_dir() {
        local rel="" part
        for part in ${1//\// }; do
            rel+="/$part"
            [[ -d "$up$rel" ]] && continue
            mkdir "$up$rel"
            if [[ -d "$rootfs$rel" ]]; then
                chown --reference="$rootfs$rel" "$up$rel"
                chmod --reference="$rootfs$rel" "$up$rel"
            fi
        done
    }
    host_dir etc/ssh
    host_dir etc/lab
    host_dir home/pi/.ssh
    chmod 0700 "$up/etc/lab" "$up/home/pi/.ssh"
    chown "$pi_ids" "$up/home/pi/.ssh"

    # Host identity: its own ed25519, ECDSA and RSA host keys (Debian's openssh-server makes all
    # three at first boot); known_hosts holds all three.
    for type in ed25519 ecdsa rsa; do
        ssh-keygen -q -t "$type" -N "" -C "root@$name" -f "$up/etc/ssh/ssh_host_${type}_key"
        echo "$addr $(cut -d' ' -f1,2 "$up/etc/ssh/ssh_host_${type}_key.pub")" >>"$known"
    done
    echo "$name" >"$up/etc/hostname"
    {
        printf '127.0.0.1\tlocalhost\n%s\t%s.%s %s\n' "$addr" "$name" "$domain" "$name"
        for o in "${hosts[@]}"; do
            read -r oname oaddr _ <<<"$o"
            [[ "$oname" == "$name" ]] || printf '%s\t%s.%s %s\n' "$oaddr" "$oname" "$domain" "$oname"
        done
    } >"$up/etc/hosts"
    # sshd_config is Debian's, untouched (lab/rootfs.sh): the lab key logs in as pi.
    echo "$ssh_pub" >"$up/home/pi/.ssh/authorized_keys"
    chown "$pi_ids" "$up/home/pi/.ssh/authorized_keys"
    chmod 0600 "$up/home/pi/.ssh/authorized_keys"

    # Node identity for the k3s double: what the host's kubelet would use.
    cert "node-$name" "/O=system:nodes/CN=system:node:$name" clientAuth
    kubeconfig "$up/etc/lab/node.kubeconfig" "$LAB_API_URL" "node-$name"
    cp "$LAB_PKI/ca.crt" "$up/etc/lab/ca.crt"
    {
        echo "# Written by lab/lab-up.sh: what this lab host may use (lab/README-interface.md)."
        echo "LAB_NODE_NAME=$name"
        echo "LAB_NODE_ADDRESS=$addr"
        echo "LAB_NODE_ROLE=$role"
        echo "LAB_API_SERVER=$LAB_API_URL"
        echo "LAB_CA_CERT=/etc/lab/ca.crt"
        echo "LAB_NODE_KUBECONFIG=/etc/lab/node.kubeconfig"
        echo "LAB_KUBECTL=/opt/lab/bin/kubectl"
        echo "LAB_NODE_CPU=$cpu"
        echo "LAB_NODE_MEMORY=$memory"
        if [[ "$role" == server ]]; then
            echo "LAB_ADMIN_KUBECONFIG=/etc/lab/admin.kubeconfig"
            echo "LAB_K3S_YAML=/etc/lab/k3s.yaml"
        fi
    } >"$up/etc/lab/apiserver.env"
    if [[ "$role" == server ]]; then
        cp "$LAB_PKI/admin.kubeconfig" "$up/etc/lab/admin.kubeconfig"
        # As k3s writes it: admin credentials, server https://127.0.0.1:6443 (the supervisor).
        sed "s|server: $LAB_API_URL|server: https://127.0.0.1:$LAB_API_PORT|" \
            "$LAB_PKI/admin.kubeconfig" >"$up/etc/lab/k3s.yaml"
        chmod 0600 "$up/etc/lab/k3s.yaml"
        # The k3s double's hook (lab/k3s-double/k3s reads /etc/k3s-double.env).
        echo "K3S_DOUBLE_KUBECONFIG=/etc/lab/k3s.yaml" >"$up/etc/k3s-double.env"
    else
        echo "K3S_DOUBLE_KUBECONFIG=/etc/lab/node.kubeconfig" >"$up/etc/k3s-double.env"
    fi
    echo "K3S_DOUBLE_DATASTORE=/var/lib/lab-datastore" >>"$up/etc/k3s-double.env"

    # Network: a namespace, a veth pair into the bridge.
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$LAB_BRIDGE" up
    ip -n "$ns" addr add "$addr/$LAB_PREFIX_LEN" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$LAB_BRIDGE_ADDR"

    [[ "$storage" == - ]] || mkdir -p "$hd/storage"
    host_start "$name" "$addr" "$role" "$storage"
    hostkey="$(cut -d' ' -f1,2 "$up/etc/ssh/ssh_host_ed25519_key.pub")"
    hosts_json+="$([[ "$hosts_json" == "[" ]] || echo ,){\"hostname\":\"$name\",\"address\":\"$addr\",\"role\":\"$role\",\"netns\":\"$ns\",\"host_key\":\"$hostkey\",\"dir\":\"$hd\"}"
done
echo "$hosts_json]" >"$LAB_DIR/hosts.json"
log "${#hosts[@]} hosts started after $((SECONDS - start)) s"

wait_healthy kube-apiserver "$LAB_API_URL/readyz" --cacert "$LAB_PKI/ca.crt"

daemon kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$LAB_PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$LAB_PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$LAB_PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$LAB_PKI/sa.key" --root-ca-file "$LAB_PKI/ca.crt" \
    --cluster-signing-cert-file "$LAB_PKI/ca.crt" --cluster-signing-key-file "$LAB_PKI/ca.key" \
    --service-cluster-ip-range "$LAB_SERVICE_CIDR" --cluster-name lab --profiling=false --v=1 \
    --node-monitor-grace-period 60s
daemon kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$LAB_PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$LAB_PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig "$LAB_PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1
# Its own configuration, so a ~/.kwok/kwok.yaml on the machine cannot change it: the default
# stages (nodes Ready, pods Running, deletions completed) and node leases like a kubelet's (40 s,
# renewed every 10 s). Without leases KWOK heartbeats only through node status every ~45 s,
# past the node controller's 40 s grace: nodes flap NotReady and their pods lose Ready.
printf 'apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  nodeLeaseDurationSeconds: 40\n' >"$LAB_RUN/kwok.yaml"
daemon kwok "$bin/kwok" --config "$LAB_RUN/kwok.yaml" \
    --kubeconfig "$LAB_PKI/kwok.kubeconfig" \
    --manage-all-nodes=true --cidr "$LAB_CLUSTER_CIDR" --node-ip "$LAB_BRIDGE_ADDR" \
    --server-address 127.0.0.1:10247

# What k3s' ServiceLB would do for LoadBalancer Services (a double: lab/servicelb-double.py).
python_exe="$(readlink -f "$LAB_PYTHON")"
daemon servicelb-double "$python_exe" "$lab_here/servicelb-double.py" "$bin/kubectl" "$LAB_PKI/admin.kubeconfig"

# SSH agent holding the lab key (for tools that want SSH_AUTH_SOCK).
agent_out="$(ssh-agent -s -a "$LAB_DIR/agent.sock")"
agent_pid="$(sed -n 's/^SSH_AGENT_PID=\([0-9]*\);.*/\1/p' <<<"$agent_out")"
echo "$agent_pid $(command -v ssh-agent)" >"$LAB_RUN/ssh-agent.pid"
SSH_AUTH_SOCK="$LAB_DIR/agent.sock" ssh-add -q "$LAB_DIR/id_ed25519"

for h in "${hosts[@]}"; do
    read -r name addr _ <<<"$h"
    host_wait_ssh "$name" "$addr"
done
log "every host answers ssh after $((SECONDS - start)) s"
wait_healthy kube-controller-manager https://127.0.0.1:10257/healthz -k
wait_healthy kube-scheduler https://127.0.0.1:10259/healthz -k
wait_healthy kwok http://127.0.0.1:10247/healthz
# The ServiceAccount controller is working once the default namespace has its account.
for _ in $(seq 300); do
    curl -fsS --max-time 2 --cacert "$LAB_PKI/ca.crt" --cert "$LAB_PKI/admin.crt" --key "$LAB_PKI/admin.key" \
        "$LAB_API_URL/api/v1/namespaces/default/serviceaccounts/default" >/dev/null 2>&1 && break
    sleep 0.2
done

# What a k3s server adds to the API at start: the helm-controller's CRDs (lab/crds/).
"$bin/kubectl" --kubeconfig "$LAB_DIR/admin.kubeconfig" apply --server-side -f "$lab_here/crds/" >/dev/null
"$bin/kubectl" --kubeconfig "$LAB_DIR/admin.kubeconfig" wait --for condition=Established --timeout 60s \
    crd/helmcharts.helm.cattle.io crd/helmchartconfigs.helm.cattle.io >/dev/null

cat >"$LAB_DIR/env.sh" <<EOF
# Written by lab/lab-up.sh. Source it to talk to the lab.
export LAB_DIR='$LAB_DIR'
export LAB_BIN='$bin'
export LAB_KUBECTL='$bin/kubectl'
export LAB_API_SERVER='$LAB_API_URL'
export LAB_KUBECONFIG='$LAB_DIR/admin.kubeconfig'
export LAB_CA_CERT='$LAB_PKI/ca.crt'
export LAB_ADMIN_CERT='$LAB_PKI/admin.crt'
export LAB_ADMIN_KEY='$LAB_PKI/admin.key'
export LAB_SSH_KEY='$LAB_DIR/id_ed25519'
export LAB_KNOWN_HOSTS='$known'
export LAB_HOSTS_JSON='$LAB_DIR/hosts.json'
export SSH_AUTH_SOCK='$LAB_DIR/agent.sock'
export SSH_AGENT_PID='$agent_pid'
EOF
lab_ok=1
log "up in $((SECONDS - start)) s: ${#hosts[@]} hosts, API $LAB_API_URL; source $LAB_DIR/env.sh"
