package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUnixSocketExample builds and runs examples/unixsocket against the
// testbed: a local forward listening on a unix socket carries a random
// message to a TCP server that answers with its SHA-256, and the socket file
// is gone once the tunnel is closed.
func TestUnixSocketExample(t *testing.T) {
	t.Parallel()
	bin := buildExample(t, "unixsocket")
	ctx := testContext(t)
	port, accepted := startDigest(t)
	// 32 KiB of text: well past one write, well within one argument's limit.
	message := hex.EncodeToString(randomBytes(t, 16<<10))
	sum := sha256.Sum256([]byte(message))
	want := hex.EncodeToString(sum[:])

	stdout, stderr, err := runExample(ctx, bin, nil,
		"-addr", bed.vars["TUNNELD_ADDR"],
		"-target-host", "127.0.0.1",
		"-target-port", fmt.Sprint(port),
		"-message", message)
	if err != nil {
		t.Fatalf("unixsocket: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	opened := regexp.MustCompile(`(?m)^opened (t-\S+): (/\S+/forward\.sock) -> 127\.0\.0\.1:` + fmt.Sprint(port) + `$`).FindStringSubmatch(stdout)
	if opened == nil {
		t.Fatalf("unixsocket printed no `opened` line with the socket's path:\n%s", stdout)
	}
	id, path := opened[1], opened[2]
	for _, line := range []string{
		fmt.Sprintf("%s is a socket: Srw-------\n", path),
		fmt.Sprintf("sent %d bytes, got back %d: %q\n", len(message), len(want), want),
		fmt.Sprintf("closed %s: %s removed\n", id, path),
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("unixsocket output lacks %q:\n%s", line, stdout)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the digest server accepted %d connections, want 1", n)
	}
	if listTunnel(ctx, t, id) != nil {
		t.Errorf("unixsocket left %s open", id)
	}
	// The example removes its temporary directory too.
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s after the example: %v, want it gone", path, err)
	}
}

// startDigest starts a TCP server on 127.0.0.1:0 that reads each connection
// to end-of-file, answers with the SHA-256 of what it read in lowercase hex
// and closes; it is stopped when the test ends. Returns its port and the
// number of connections it accepted.
func startDigest(t *testing.T) (uint32, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("digest server: %v", err)
	}
	var (
		wg       sync.WaitGroup
		accepted atomic.Int64
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(testTimeout))
				h := sha256.New()
				if _, err := io.Copy(h, c); err == nil {
					_, _ = io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return uint32(ln.Addr().(*net.TCPAddr).Port), &accepted
}
