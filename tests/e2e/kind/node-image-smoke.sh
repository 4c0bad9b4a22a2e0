#!/usr/bin/env bash
# Prove that the offline node image (node-image.sh) makes a working kind cluster with the
# project's kind-config.yaml: every system pod Running and Ready, resource.k8s.io/v1 served, a
# pod of a locally built busybox image runs, reaches the API server through its ClusterIP and
# resolves cluster DNS, and a local-path PVC binds. The cluster is deleted at the end, also
# after a failure.
#
#   tests/e2e/kind/node-image-smoke.sh [IMAGE]   (env: DOCKER_HOST, DOCKER, DRA_E2E_CACHE,
#                                                 KIND_VERSION, CLUSTER; IMAGE: node-image.sh's)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
e2e="$(cd "$here/.." && pwd)"
cache="${DRA_E2E_CACHE:-$HOME/.cache/dra-cdi-driver-e2e}"
docker="${DOCKER:-/usr/bin/docker}"
KIND_VERSION="${KIND_VERSION:-v0.32.0}"
K8S_VERSION="${K8S_VERSION:-$(awk '$1=="require"{$1=""; $0=$0} $1=="k8s.io/kubernetes"{print $2}' "$e2e/go.mod")}"
cluster="${CLUSTER:-dra-nodeimg-test}"
kind="$cache/kind-$KIND_VERSION/kind"
image="${1:-$("$here/node-image.sh" | tail -n1)}"

tmp="$(mktemp -d /tmp/dra-kind-smoke.XXXXXX)"
mkdir -p "$tmp/bin"
ln -s "$docker" "$tmp/bin/docker" # kind runs `docker` from PATH
export PATH="$tmp/bin:$PATH"
kubectl() { "$cache/k8s-$K8S_VERSION/bin/kubectl" --context "kind-$cluster" "$@"; }
step() { echo "[smoke $((SECONDS - t0))s] $*"; }
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        echo "[smoke] FAILED (exit $rc); state of the cluster:"
        kubectl get pods -A -o wide 2>&1 || true
        kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -30 || true
    fi
    "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
    "$docker" rmi dra-cdi-driver-e2e/smoke-busybox:e2e >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
t0=$SECONDS

step "kind create cluster --name $cluster --image $image"
"$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
"$kind" create cluster --name "$cluster" --config "$root/kind-config.yaml" --image "$image" --wait 180s

step "system pods"
kubectl wait --for=condition=Ready pods --all -n kube-system --timeout=120s
kubectl wait --for=condition=Ready pods --all -n local-path-storage --timeout=120s
kubectl get pods -A -o wide
notrunning="$(kubectl get pods -A --no-headers | awk '$4 != "Running"')"
[ -z "$notrunning" ] || { echo "not Running:"; echo "$notrunning"; exit 1; }

step "resource.k8s.io/v1"
kubectl get --raw /apis/resource.k8s.io/v1 | head -c 300
echo

step "busybox image (FROM scratch: the host's static busybox, kubectl), kind load docker-image"
mkdir -p "$tmp/busybox"
cp /bin/busybox "$cache/k8s-$K8S_VERSION/bin/kubectl" "$tmp/busybox/"
printf 'FROM scratch\nCOPY busybox kubectl /bin/\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENTRYPOINT ["/bin/sh"]\n' >"$tmp/busybox/Dockerfile"
DOCKER_BUILDKIT=1 "$docker" build -q -t dra-cdi-driver-e2e/smoke-busybox:e2e "$tmp/busybox" >/dev/null
"$kind" load docker-image --name "$cluster" dra-cdi-driver-e2e/smoke-busybox:e2e

step "a pod: API server by ClusterIP, cluster DNS"
kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: smoke
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: dra-cdi-driver-e2e/smoke-busybox:e2e
    imagePullPolicy: Never
    command: ["sleep", "3600"]
EOF
kubectl wait --for=condition=Ready pod/smoke --timeout=60s
# TCP to the API server's ClusterIP (kube-proxy's rules, the CNI's ipMasq on the way back)
kubectl exec smoke -- nc -w 5 10.96.0.1 443 </dev/null
# and an answer from it. busybox's own small TLS client fails the handshake with the API server
# (wget: "TLS error from peer (alert code 40)"), so ask with kubectl (static Go) in the pod,
# over the ClusterIP, with the pod's service account
sa=/var/run/secrets/kubernetes.io/serviceaccount
kubectl exec smoke -- sh -c "kubectl --server=https://10.96.0.1:443 --certificate-authority=$sa/ca.crt \
    --token=\"\$(cat $sa/token)\" get --raw /version" | tee "$tmp/version"
grep -q "\"gitVersion\": \"$K8S_VERSION\"" "$tmp/version"
echo
kubectl exec smoke -- nslookup kubernetes.default.svc.cluster.local
kubectl exec smoke -- nslookup kubernetes.default.svc.cluster.local | grep -q 10.96.0.1

step "a local-path PVC binds"
kubectl apply -f - <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: smoke
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: smoke-pvc
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: dra-cdi-driver-e2e/smoke-busybox:e2e
    imagePullPolicy: Never
    command: ["sh", "-c", "echo ok > /data/f && cat /data/f"]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: smoke}}]
EOF
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/smoke-pvc --timeout=120s
kubectl get pvc smoke

step "all checks passed; deleting the cluster"
