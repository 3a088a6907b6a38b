package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// How long the testbed may take to print READY, and to stop after SIGTERM
// before its process group is killed.
const (
	testbedStartTimeout = 60 * time.Second
	testbedStopTimeout  = 15 * time.Second
)

// bed is the one testbed the whole package shares; every test is
// parallel-safe against it (each opens and closes only its own tunnels).
var bed *testbed

// testbed is a running `testbed` process: an sshd and a tunneld.
type testbed struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // closing it also stops the testbed
	stderr *syncBuffer
	exited chan struct{} // closed once cmd.Wait returned
	vars   map[string]string

	// A plaintext connection to tunneld, for the shared testbed only (the
	// ones started with --token or --tls need credentials: see
	// security_test.go).
	conn   *grpc.ClientConn
	client tunnelv1.TunnelServiceClient
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	b, err := startTestbed()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	// tunneld listens on loopback without TLS.
	b.conn, err = grpc.NewClient(b.vars["TUNNELD_ADDR"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = b.stop()
		fmt.Fprintf(os.Stderr, "e2e: dialing tunneld at %s: %v\n", b.vars["TUNNELD_ADDR"], err)
		return 1
	}
	b.client = tunnelv1.NewTunnelServiceClient(b.conn)
	bed = b
	code := m.Run()
	beds := map[string]*testbed{"testbed": b}
	for args, extra := range extraBeds.started() {
		beds["testbed "+args] = extra
	}
	logs := map[string]string{}
	for name, b := range beds {
		// tunneld's log goes away with the testbed: read it first.
		logs[name] = b.logs()
		if err := b.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", name, err)
			if code == 0 {
				code = 1
			}
		}
	}
	if code != 0 {
		for name, text := range logs {
			fmt.Fprintf(os.Stderr, "--- %s ---\n%s", name, text)
		}
	}
	return code
}

// extraBeds holds the testbeds started with arguments (`--token`, `--tls`):
// each starts when the first test asks for it, is shared by the tests that
// do, and is stopped by TestMain.
var extraBeds = &bedSet{beds: map[string]*lazyBed{}}

type bedSet struct {
	mu   sync.Mutex
	beds map[string]*lazyBed // by their arguments, space-separated
}

type lazyBed struct {
	once sync.Once
	bed  *testbed
	err  error
}

// testbedWith returns the running `testbed ARGS`, starting it on first use;
// the test fails if it does not start.
func testbedWith(t *testing.T, args ...string) *testbed {
	t.Helper()
	key := strings.Join(args, " ")
	extraBeds.mu.Lock()
	lb := extraBeds.beds[key]
	if lb == nil {
		lb = &lazyBed{}
		extraBeds.beds[key] = lb
	}
	extraBeds.mu.Unlock()
	lb.once.Do(func() { lb.bed, lb.err = startTestbed(args...) })
	if lb.err != nil {
		t.Fatalf("testbed %s: %v", key, lb.err)
	}
	return lb.bed
}

// started returns the extra testbeds that are running, by their arguments.
func (s *bedSet) started() map[string]*testbed {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*testbed{}
	for key, lb := range s.beds {
		if lb.bed != nil {
			out[key] = lb.bed
		}
	}
	return out
}

// testbedPath is $TUNNELD_TESTBED, else the repository's debug build. go test
// runs a package's tests in its source directory, so the repository root is
// three levels up from clients/go/e2e.
func testbedPath() (string, error) {
	if p := os.Getenv("TUNNELD_TESTBED"); p != "" {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return filepath.Join(wd, "..", "..", "..", "target", "debug", "testbed"), nil
}

// startTestbed starts `testbed ARGS` and waits for READY.
func startTestbed(args ...string) (*testbed, error) {
	path, err := testbedPath()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("testbed binary not found (%v): build it with `cargo build --workspace --bins`, or set TUNNELD_TESTBED", err)
	}

	// Stdin stays open for the testbed's lifetime: if this test binary dies
	// without cleaning up (a panic, `go test -timeout`), the pipe closes and
	// the testbed stops its sshd and tunneld by itself.
	cmd := exec.Command(path, args...)
	// Its own process group, so a testbed that ignores SIGTERM can be killed
	// together with its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b := &testbed{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{}), vars: map[string]string{}}
	cmd.Stderr = b.stderr
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	go func() {
		_ = cmd.Wait()
		close(b.exited)
	}()

	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "READY" {
				ready <- nil
				// Keep draining so the testbed never blocks on a full pipe.
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				b.vars[k] = shellUnquote(v)
			}
		}
		ready <- fmt.Errorf("testbed ended its output before READY (%v)", sc.Err())
	}()

	fail := func(err error) (*testbed, error) {
		_ = b.stop()
		return nil, fmt.Errorf("%w\n--- testbed stderr ---\n%s", err, b.stderr.String())
	}
	select {
	case err := <-ready:
		if err != nil {
			return fail(err)
		}
	case <-time.After(testbedStartTimeout):
		return fail(fmt.Errorf("testbed printed no READY within %v", testbedStartTimeout))
	}
	want := []string{"TUNNELD_ADDR", "TUNNELD_PID", "TUNNELD_LOG", "SSHD_PORT", "SSH_USER"}
	for _, arg := range args {
		switch arg {
		case "--token":
			want = append(want, "TUNNELD_TOKEN")
		case "--tls":
			want = append(want, "TUNNELD_TLS_CA", "TUNNELD_TLS_CERT", "TUNNELD_TLS_KEY", "TUNNELD_TLS_SERVER_NAME")
		}
	}
	for _, k := range want {
		if b.vars[k] == "" {
			return fail(fmt.Errorf("testbed printed no %s (got %v)", k, b.vars))
		}
	}
	return b, nil
}

// stop closes the connection and stops the testbed: SIGTERM and end of
// stdin, then a kill of its process group if it has not exited in time.
func (b *testbed) stop() error {
	if b.conn != nil {
		_ = b.conn.Close()
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	// Closing stdin too: the testbed reads it on a blocking thread that
	// would otherwise keep its runtime from exiting after SIGTERM.
	_ = b.stdin.Close()
	select {
	case <-b.exited:
	case <-time.After(testbedStopTimeout):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exited
		return fmt.Errorf("testbed did not stop within %v; killed its process group", testbedStopTimeout)
	}
	if st := b.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("testbed exited with %v", st)
	}
	return nil
}

// logs returns the testbed's stderr (its own and sshd's messages) and
// tunneld's log, for a failure report.
func (b *testbed) logs() string {
	text := "stderr:\n" + b.stderr.String()
	if path := b.vars["TUNNELD_LOG"]; path != "" {
		log, err := os.ReadFile(path)
		if err != nil {
			return text + fmt.Sprintf("tunneld log: %v\n", err)
		}
		text += "tunneld log " + path + ":\n" + string(log)
	}
	return text
}

// shellUnquote undoes the testbed's single-quoting of values holding
// characters a shell would interpret.
func shellUnquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], `'\''`, `'`)
	}
	return v
}

// syncBuffer is a bytes.Buffer safe for the exec package's copying goroutine
// and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// errTimeout is what poll reports when its context ends first.
var errTimeout = errors.New("timed out")

// testTimeout bounds every test; no test should come near it.
const testTimeout = 30 * time.Second

// testContext returns a context that ends when the test does or after
// testTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
