// Package e2e holds the Go client's end-to-end suite: `go test ./e2e` starts
// the repository's testbed (a throwaway OpenSSH sshd on loopback and a
// tunneld against it), then drives every RPC of tunnel.v1 through the
// generated stubs, against real peers.
//
// The testbed binary is $TUNNELD_TESTBED, else target/debug/testbed of the
// repository (build it with `cargo build --workspace --bins`). The suite
// fails when it is missing; it never skips.
package e2e
