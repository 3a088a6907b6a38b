// Package verify holds the tests of tunneld's deploy files: every object
// `kubectl kustomize deploy/k8s` renders decodes strictly into the real
// Kubernetes API types, and the flags that the Kubernetes manifests, the
// Dockerfile and the systemd unit pass to tunneld pass `tunneld
// --check-config` with the config files they ship, and tunneld started as
// the image and the pod start it passes their health probes. Run by
// scripts/check-deploy.sh, which names the built binaries in TUNNELD_BIN
// and TUNNELCTL_BIN.
package verify
