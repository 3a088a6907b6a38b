// Package verify holds the tests of tunneld's deploy files: every object
// `kubectl kustomize deploy/k8s` renders decodes strictly into the real
// Kubernetes API types, and the flags that the Kubernetes manifests, the
// Dockerfile and the systemd unit pass to tunneld pass `tunneld
// --check-config` with the config files they ship. Run by
// scripts/check-deploy.sh, which builds tunneld and names it in TUNNELD_BIN.
package verify
