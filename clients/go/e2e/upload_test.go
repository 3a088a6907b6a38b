package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// uploadSize is more than any single window of the SSH channel (2 MiB here)
// or of HTTP/2, so the upload only completes if stdin keeps flowing as the
// command reads it; the odd tail makes the last chunk a short one.
const uploadSize = 8<<20 + 1234

// TestUploadExample builds examples/upload, uploads random data with it
// through ExecStream, and checks the copy with the host's own sha256sum.
func TestUploadExample(t *testing.T) {
	t.Parallel()
	bin := buildExample(t, "upload")
	ctx := testContext(t)
	data := randomBytes(t, uploadSize)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	dir := t.TempDir()
	local := filepath.Join(dir, "local.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The SSH server is this machine, logged in as this user: the remote
	// path is the test's too. The quote and the space go through the
	// example's shell quoting.
	remote := filepath.Join(dir, "remote copy's.bin")

	stdout, stderr, err := runExample(ctx, bin, nil, "-addr", bed.vars["TUNNELD_ADDR"], local, remote)
	if err != nil {
		t.Fatalf("upload: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	for _, line := range []string{
		fmt.Sprintf("uploaded %d bytes to %s, sha256 %s\n", uploadSize, remote, want),
		fmt.Sprintf("verified: %s on the host has sha256 %s\n", remote, want),
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("upload output lacks %q:\n%s", line, stdout)
		}
	}

	// The host's sha256sum, asked by the test itself, and the file read
	// without tunneld.
	out := runOK(ctx, t, "sha256sum < "+shellQuote(remote))
	if got := strings.Fields(out); len(got) == 0 || got[0] != want {
		t.Errorf("remote sha256sum printed %q, want %s", out, want)
	}
	copied, err := os.ReadFile(remote)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(copied, data) {
		t.Errorf("the remote file holds %d bytes that differ from the %d sent", len(copied), len(data))
	}
}

// TestUploadExampleReportsAMismatch uploads to /dev/null: the bytes are gone,
// the host's sha256sum sees an empty file, and the example must say so and
// exit 1.
func TestUploadExampleReportsAMismatch(t *testing.T) {
	t.Parallel()
	bin := buildExample(t, "upload")
	ctx := testContext(t)
	data := randomBytes(t, 4096)
	local := filepath.Join(t.TempDir(), "local.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sent, empty := sha256.Sum256(data), sha256.Sum256(nil)

	stdout, stderr, err := runExample(ctx, bin, nil, "-addr", bed.vars["TUNNELD_ADDR"], local, "/dev/null")
	wantExit(t, err, 1, stdout, stderr)
	want := fmt.Sprintf("upload: sha256 mismatch: %s is %x, /dev/null on the host is %x\n", local, sent, empty)
	if stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
}

// TestUploadExampleReportsAFailedWrite uploads into a missing directory: the
// command fails before reading its stdin, and the example reports the
// shell's message, not a hang or a transport error.
func TestUploadExampleReportsAFailedWrite(t *testing.T) {
	t.Parallel()
	bin := buildExample(t, "upload")
	ctx := testContext(t)
	dir := t.TempDir()
	local := filepath.Join(dir, "local.bin")
	if err := os.WriteFile(local, randomBytes(t, uploadSize), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(dir, "missing", "file")

	stdout, stderr, err := runExample(ctx, bin, nil, "-addr", bed.vars["TUNNELD_ADDR"], local, remote)
	wantExit(t, err, 1, stdout, stderr)
	prefix := fmt.Sprintf("upload: writing %s on the default host: `cat > '%s'` exited with ", remote, remote)
	// Then the exit code and the shell's own words, which bash and dash put
	// (and number) differently.
	_, said, ok := strings.Cut(strings.TrimPrefix(stderr, prefix), ": ")
	if !strings.HasPrefix(stderr, prefix) || !ok || !strings.Contains(said, "missing/file") {
		t.Errorf("stderr = %q, want %q, a code, then the shell's message", stderr, prefix)
	}
}

// wantExit fails the test unless err is an exit with code.
func wantExit(t *testing.T, err error, code int, stdout, stderr string) {
	t.Helper()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != code {
		t.Fatalf("exit: %v, want exit status %d\nstdout:\n%s\nstderr:\n%s", err, code, stdout, stderr)
	}
}

// shellQuote quotes s for the remote POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
