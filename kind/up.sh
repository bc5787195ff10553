#!/usr/bin/env bash
# A local Caspian fleet on kind: three spokes, Argo CD syncing each one's
# rendered/ directory, the fleet repo served to Argo CD from this machine, and
# `caspian watch` reconciling it. Undo with kind/down.sh.
#
#   kind/up.sh                      one hub cluster whose Argo CD syncs every spoke
#   kind/up.sh --layout each-spoke  no hub: each spoke runs its own Argo CD
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

layout=hub
while [ $# -gt 0 ]; do
  case "$1" in
    --layout) layout=${2:-}; shift 2 || shift ;;
    --layout=*) layout=${1#--layout=}; shift ;;
    *) fail "unknown argument '$1': the one option is --layout hub|each-spoke" ;;
  esac
done
case "$layout" in
  hub | each-spoke) ;;
  *) fail "--layout is '$layout': give hub (the default) or each-spoke" ;;
esac

need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need git "your package manager"
docker info >/dev/null 2>&1 || fail "docker is installed but its daemon does not answer: start it"
[ -x "$caspian" ] || fail "no caspian at $caspian: run 'make venv' in $root first (or set CASPIAN)"

mkdir -p "$state/git"
# The running `caspian watch` and the Argo CDs were set up for one layout;
# another over them would leave both half made.
if [ -f "$state/layout" ] && [ "$(cat "$state/layout")" != "$layout" ]; then
  fail "this fleet was made with --layout $(cat "$state/layout"): run kind/down.sh first"
fi
echo "$layout" >"$state/layout"

clusters=("${spokes[@]}")
[ "$layout" = hub ] && clusters=(hub "${spokes[@]}")
echo "==> clusters: ${clusters[*]}"
for name in "${clusters[@]}"; do
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

install_argocd() {  # context: Argo CD, with the Job health Caspian reads, in that cluster
  echo "==> Argo CD $argocd_version on $1"
  kubectl --context "$1" create namespace argocd --dry-run=client -o yaml |
    kubectl --context "$1" apply -f -
  kubectl --context "$1" -n argocd apply --server-side --force-conflicts \
    -f "https://raw.githubusercontent.com/argoproj/argo-cd/$argocd_version/manifests/install.yaml"
  kubectl --context "$1" -n argocd rollout status deploy/argocd-server --timeout=300s
  # Resumed Jobs show Progressing, not Healthy, until they end (argocd/job-health.yaml).
  kubectl --context "$1" -n argocd patch configmap argocd-cm --type merge \
    --patch-file "$root/argocd/job-health.yaml"
  # Argo CD 3 keeps each resource's health out of its Application unless told to;
  # Caspian reads it there.
  kubectl --context "$1" -n argocd patch configmap argocd-cmd-params-cm --type merge \
    -p '{"data":{"controller.resource.health.persist":"true"}}'
  kubectl --context "$1" -n argocd rollout restart statefulset/argocd-application-controller
}

pointed() {  # manifest under argocd/: with repoURL at the fleet repo served here
  sed "s|git://fleet-git.invalid/fleet.git|$repo|g" "$root/argocd/$1"
}

fill() {  # template spoke server ca cert key: the cluster Secret with its ${...} filled
  sed -e "s|\${SPOKE}|$2|g" -e "s|\${SERVER}|$3|g" -e "s|\${CA_DATA}|$4|g" \
    -e "s|\${CERT_DATA}|$5|g" -e "s|\${KEY_DATA}|$6|g" "$1"
}

if [ "$layout" = hub ]; then
  install_argocd kind-hub
  kubectl --context kind-hub -n argocd patch svc argocd-server --type merge -p \
    '{"spec":{"type":"NodePort","ports":[{"name":"https","port":443,"targetPort":8080,"nodePort":30443}]}}'

  echo "==> spokes: observer access, and registration with their internal addresses"
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
    pointed "$manifest" | kubectl --context kind-hub apply -f -
  done
  argocd_flags=(--argocd-context kind-hub)
else
  for spoke in "${spokes[@]}"; do
    install_argocd "kind-$spoke"
    echo "==> $spoke: Caspian's project and its own Application, reading $repo"
    pointed appproject.yaml | kubectl --context "kind-$spoke" apply -f -
    pointed spoke-application.template.yaml | sed "s|\${SPOKE}|$spoke|g" |
      kubectl --context "kind-$spoke" apply -f -
    # The observer reads the spoke's Jobs, and its Argo CD's Applications.
    kubectl --context "kind-$spoke" apply -f "$root/deploy/spoke-rbac.yaml" >/dev/null
    kubectl --context "kind-$spoke" apply -f "$root/deploy/spoke-rbac-argocd.yaml" >/dev/null
  done
  # Each spoke's own Argo CD, through the spoke's kubeContext (kind-<spoke>).
  argocd_flags=(--argocd-on-spokes)
fi

echo "==> caspian watch (log: $state/caspian.log; metrics: http://127.0.0.1:8080/metrics)"
if ! { [ -f "$state/caspian.pid" ] && kill -0 "$(cat "$state/caspian.pid")" 2>/dev/null; }; then
  # The spokes answer for themselves; Argo CD adds the Jobs it could not
  # apply, the spokes it cannot sync, and its sync windows.
  nohup "$caspian" watch --repo "$state/git/fleet.git" --observer kube \
    "${argocd_flags[@]}" \
    --listen 127.0.0.1:8080 --interval 30 >>"$state/caspian.log" 2>&1 &
  echo $! >"$state/caspian.pid"
fi

password() {  # context: Argo CD's first admin password there
  kubectl --context "$1" -n argocd get secret argocd-initial-admin-secret \
    -o jsonpath='{.data.password}' | base64 -d
}

echo
if [ "$layout" = hub ]; then
  echo "Argo CD:   https://127.0.0.1:8443   (user admin, password $(password kind-hub))"
else
  for spoke in "${spokes[@]}"; do
    echo "Argo CD on $spoke: kubectl --context kind-$spoke -n argocd port-forward svc/argocd-server 8443:443"
    echo "           then https://127.0.0.1:8443   (user admin, password $(password "kind-$spoke"))"
  done
fi
cat <<DONE
Fleet:     git clone $state/git/fleet.git   (push AppWrappers to jobs/ on main)
Placement: $caspian plan --repo $state/git/fleet.git --observer kube ${argocd_flags[*]}
Tear down: kind/down.sh
DONE
