package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestQuickstartExample builds and runs examples/quickstart against the
// testbed, so the example cannot rot.
func TestQuickstartExample(t *testing.T) {
	t.Parallel()
	bin := buildQuickstart(t)
	echo := startEcho(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	stdout, stderr, err := runExample(ctx, bin, nil,
		"-addr", bed.vars["TUNNELD_ADDR"],
		"-target", hostPort("127.0.0.1", echo),
		"-command", "echo quickstart-$((6*7)); echo to-stderr >&2")
	if err != nil {
		t.Fatalf("quickstart: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	opened := regexp.MustCompile(`(?m)^opened (\S+): 127\.0\.0\.1:\d+ -> ` + regexp.QuoteMeta(hostPort("127.0.0.1", echo)) + `$`).FindStringSubmatch(stdout)
	if opened == nil {
		t.Fatalf("quickstart printed no `opened` line:\n%s", stdout)
	}
	id := opened[1]
	for _, want := range []string{
		`sent 22 bytes, got back 22: "hello through tunneld\n"`,
		"quickstart-42\nexit code 0\n",
		fmt.Sprintf("tunnel %s TUNNEL_KIND_LOCAL via default:", id),
		fmt.Sprintf("closed %s: 1 connection(s), 22 bytes to target, 22 bytes back", id),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "to-stderr\n") {
		t.Errorf("quickstart stderr lacks the command's stderr: %q", stderr)
	}
	if listTunnel(ctx, t, id) != nil {
		t.Errorf("quickstart left %s open", id)
	}
}

// buildQuickstart builds examples/quickstart into the test's temporary
// directory and returns the binary's path.
func buildQuickstart(t *testing.T) string {
	t.Helper()
	return buildExample(t, "quickstart")
}

// buildExample builds examples/NAME into the test's temporary directory and
// returns the binary's path.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	// Building may take a while on a cold cache.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), name)
	// go test puts its own go first on PATH. No VCS stamping: it fails in
	// checkouts owned by another user (git's safe.directory), and a test
	// binary needs none.
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", bin, "github.com/tunneld/tunneld/clients/go/examples/"+name)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/%s: %v\n%s", name, err, out)
	}
	return bin
}

// runExample runs an example's binary with args and returns its stdout, its
// stderr and how it exited. Its environment is this process's without any
// TUNNELD_* variable (a developer's token or TLS settings must not leak in),
// plus env.
func runExample(ctx context.Context, bin string, env map[string]string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TUNNELD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
