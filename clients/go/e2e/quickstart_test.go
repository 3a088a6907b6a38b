package e2e

import (
	"context"
	"fmt"
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
	// Building may take a while on a cold cache; the run itself is quick.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "quickstart")
	// go test puts its own go first on PATH. No VCS stamping: it fails in
	// checkouts owned by another user (git's safe.directory), and a test
	// binary needs none.
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", bin, "github.com/tunneld/tunneld/clients/go/examples/quickstart")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/quickstart: %v\n%s", err, out)
	}

	echo := startEcho(t)
	runCtx, cancelRun := context.WithTimeout(ctx, testTimeout)
	defer cancelRun()
	cmd := exec.CommandContext(runCtx, bin,
		"-addr", bed.vars["TUNNELD_ADDR"],
		"-target", hostPort("127.0.0.1", echo),
		"-command", "echo quickstart-$((6*7)); echo to-stderr >&2")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("quickstart: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	stdout := string(out)

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
	if !strings.Contains(stderr.String(), "to-stderr\n") {
		t.Errorf("quickstart stderr lacks the command's stderr: %q", stderr.String())
	}
	if listTunnel(runCtx, t, id) != nil {
		t.Errorf("quickstart left %s open", id)
	}
}
