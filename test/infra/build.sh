#!/usr/bin/env bash
# Builds the real servers the tests run against (an S3 server with Object Lock,
# etcd, kube-apiserver, kubectl, helm) from Go modules, and caches each under $VEIL_INFRA_DIR keyed by
# version, so a second run only checks stamps. Prints the bin directory last.
set -euo pipefail

# The Go module proxy refuses MinIO's RELEASE.2025-10-15 commit, so the S3 server
# is Versity's gateway (posix backend, versioning, Object Lock).
VERSITYGW_VERSION="v1.8.0"
ETCD_VERSION="v3.6.16"
KUBE_VERSION="v1.36.3"
HELM_VERSION="v4.3.2"

INFRA_DIR="${VEIL_INFRA_DIR:-$HOME/.cache/veil-infra}"
BIN_DIR="$INFRA_DIR/bin"
mkdir -p "$BIN_DIR"
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0

say() { printf '[infra] %s\n' "$*" >&2; }

# build NAME VERSION FUNCTION: runs FUNCTION (which writes binaries into $out)
# unless NAME-VERSION is already stamped, then links the binaries into bin/.
build() {
  local name=$1 version=$2 fn=$3
  local out="$INFRA_DIR/$name-$version"
  if [[ -f "$out/.done" ]]; then
    say "$name $version: cached"
  else
    say "$name $version: building…"
    local start=$SECONDS work
    rm -rf "$out" && mkdir -p "$out"
    work=$(mktemp -d)
    if ! (cd "$work" && "$fn" "$out" "$version") >"$out/build.log" 2>&1; then
      tail -n 30 "$out/build.log" >&2
      rm -rf "$work"
      say "FAILED: $name $version (full log: $out/build.log)"
      exit 1
    fi
    rm -rf "$work"
    touch "$out/.done"
    say "$name $version: built in $((SECONDS - start))s"
  fi
  local bin
  for bin in "$out"/*; do
    [[ -x "$bin" && -f "$bin" ]] && ln -sf "$bin" "$BIN_DIR/$(basename "$bin")"
  done
}

build_versitygw() {
  GOBIN="$1" go install "github.com/versity/versitygw/cmd/versitygw@$2"
}

build_helm() {
  GOBIN="$1" go install -ldflags "-X helm.sh/helm/v4/internal/version.version=$2" "helm.sh/helm/v4/cmd/helm@$2"
}

# etcd's server module carries replace directives, so `go install pkg@version`
# refuses it: build it from a throwaway module that requires it instead.
build_etcd() {
  go mod init veil-infra/etcd
  go get "go.etcd.io/etcd/server/v3@$2"
  go build -o "$1/etcd" go.etcd.io/etcd/server/v3
}

# k8s.io/kubernetes points every k8s.io/* staging module at ./staging; a
# throwaway module requires it and replaces each with the published v0.x.y.
build_kube() {
  local version=$2 staging="v0${2#v1}"
  go mod init veil-infra/kube
  go mod edit -require "k8s.io/kubernetes@$version"
  local gomod
  gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local mod
  for mod in $(grep -oE '^\s*k8s\.io/[a-z0-9._-]+ => \./staging' "$gomod" | awk '{print $1}'); do
    go mod edit -replace "$mod=$mod@$staging"
  done
  local ldflags="" pkg minor
  minor=$(cut -d. -f2 <<<"$version")
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  # -mod=mod fills go.sum as it goes; `go mod tidy` would drop the requirement
  # (nothing here imports it) and let the build float to the newest release.
  GOFLAGS="$GOFLAGS -mod=mod" go build -ldflags "$ldflags" -o "$1/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  GOFLAGS="$GOFLAGS -mod=mod" go build -ldflags "$ldflags" -o "$1/kubectl" k8s.io/kubernetes/cmd/kubectl
  grep -q "k8s.io/kubernetes $version" go.mod || { echo "built the wrong k8s.io/kubernetes version"; exit 1; }
}

total=$SECONDS
only=("$@")
want() { [[ ${#only[@]} -eq 0 ]] || [[ " ${only[*]} " == *" $1 "* ]]; }
want versitygw && build versitygw "$VERSITYGW_VERSION" build_versitygw
want etcd && build etcd "$ETCD_VERSION" build_etcd
want helm && build helm "$HELM_VERSION" build_helm
want kube && build kube "$KUBE_VERSION" build_kube
say "ready in $((SECONDS - total))s: $BIN_DIR"
echo "$BIN_DIR"
