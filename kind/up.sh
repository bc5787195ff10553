#!/usr/bin/env bash
# A local Caspian fleet: a hub with Argo CD and three spokes on kind, the fleet repo
# served to Argo CD from this machine, and `caspian watch` reconciling it.
# Undo with kind/down.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
state=${CASPIAN_KIND_STATE:-$root/.kind}
caspian=${CASPIAN:-$root/.venv/bin/caspian}
argocd_version=${ARGOCD_VERSION:-v3.1.8}
git_port=${CASPIAN_GIT_PORT:-9418}
spokes=(paris frankfurt california)

fail() { echo "kind/up.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "'$1' is not installed: $2"; }

need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need git "your package manager"
docker info >/dev/null 2>&1 || fail "docker is installed but its daemon does not answer: start it"
[ -x "$caspian" ] || fail "no caspian at $caspian: run 'make venv' in $root first (or set CASPIAN)"

mkdir -p "$state/git"

echo "==> clusters: hub ${spokes[*]}"
for name in hub "${spokes[@]}"; do
  config="$here/spoke.yaml"
  [ "$name" = hub ] && config="$here/hub.yaml"
  if ! kind get clusters 2>/dev/null | grep -qx "$name"; then
    kind create cluster --name "$name" --config "$config" --wait 120s
  fi
done

echo "==> fleet repo, served to the kind network by git daemon"
gateway=$(docker network inspect kind --format '{{(index .IPAM.Config 0).Gateway}}')
[ -n "$gateway" ] || fail "cannot find the gateway of docker network 'kind'"
[ -d "$state/git/fleet.git" ] || "$caspian" init --bare "$state/git/fleet.git"
if ! { [ -f "$state/git-daemon.pid" ] && kill -0 "$(cat "$state/git-daemon.pid")" 2>/dev/null; }; then
  git daemon --reuseaddr --export-all --enable=receive-pack --base-path="$state/git" \
    --listen="$gateway" --listen=127.0.0.1 --port="$git_port" \
    --detach --pid-file="$state/git-daemon.pid" "$state/git"
fi
repo="git://$gateway:$git_port/fleet.git"

echo "==> Argo CD $argocd_version on the hub"
kubectl --context kind-hub create namespace argocd --dry-run=client -o yaml |
  kubectl --context kind-hub apply -f -
kubectl --context kind-hub -n argocd apply --server-side --force-conflicts \
  -f "https://raw.githubusercontent.com/argoproj/argo-cd/$argocd_version/manifests/install.yaml"
kubectl --context kind-hub -n argocd rollout status deploy/argocd-server --timeout=300s
kubectl --context kind-hub -n argocd patch svc argocd-server --type merge -p \
  '{"spec":{"type":"NodePort","ports":[{"name":"https","port":443,"targetPort":8080,"nodePort":30443}]}}'
# Resumed Jobs show Progressing, not Healthy, until they end (argocd/job-health.yaml).
kubectl --context kind-hub -n argocd patch configmap argocd-cm --type merge \
  --patch-file "$root/argocd/job-health.yaml"
# Argo CD 3 keeps each resource's health out of its Application unless told to;
# Caspian reads it there.
kubectl --context kind-hub -n argocd patch configmap argocd-cmd-params-cm --type merge \
  -p '{"data":{"controller.resource.health.persist":"true"}}'
kubectl --context kind-hub -n argocd rollout restart statefulset/argocd-application-controller

echo "==> spokes: observer access, and registration with their internal addresses"
fill() {  # template spoke server ca cert key: the cluster Secret with its ${...} filled
  sed -e "s|\${SPOKE}|$2|g" -e "s|\${SERVER}|$3|g" -e "s|\${CA_DATA}|$4|g" \
    -e "s|\${CERT_DATA}|$5|g" -e "s|\${KEY_DATA}|$6|g" "$1"
}
for spoke in "${spokes[@]}"; do
  kubectl --context "kind-$spoke" apply -f "$root/deploy/spoke-rbac.yaml" >/dev/null
  internal=$(kind get kubeconfig --internal --name "$spoke")
  field() { printf '%s\n' "$internal" | sed -n "s/^ *$1: //p" | head -n 1; }
  fill "$root/argocd/cluster-secret.template.yaml" "$spoke" "$(field server)" \
    "$(field certificate-authority-data)" "$(field client-certificate-data)" \
    "$(field client-key-data)" | kubectl --context kind-hub apply -f - >/dev/null
done

echo "==> Caspian's project and ApplicationSet, reading $repo"
for manifest in appproject.yaml applicationset.yaml; do
  sed "s|git://fleet-git.invalid/fleet.git|$repo|g" "$root/argocd/$manifest" |
    kubectl --context kind-hub apply -f -
done

echo "==> caspian watch (log: $state/caspian.log; metrics: http://127.0.0.1:8080/metrics)"
if ! { [ -f "$state/caspian.pid" ] && kill -0 "$(cat "$state/caspian.pid")" 2>/dev/null; }; then
  # The spokes answer for themselves; the hub's Argo CD adds the Jobs it could
  # not apply, and the spokes it cannot sync.
  nohup "$caspian" watch --repo "$state/git/fleet.git" --observer kube \
    --argocd-context kind-hub \
    --listen 127.0.0.1:8080 --interval 30 >>"$state/caspian.log" 2>&1 &
  echo $! >"$state/caspian.pid"
fi

password=$(kubectl --context kind-hub -n argocd get secret argocd-initial-admin-secret \
  -o jsonpath='{.data.password}' | base64 -d)
cat <<DONE

Argo CD:   https://127.0.0.1:8443   (user admin, password $password)
Fleet:     git clone $state/git/fleet.git   (push AppWrappers to jobs/ on main)
Placement: $caspian plan --repo $state/git/fleet.git --observer kube --argocd-context kind-hub
Tear down: kind/down.sh
DONE
