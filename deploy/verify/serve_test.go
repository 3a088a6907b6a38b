package verify

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// secretFiles writes what a deployment mounts as secrets into dir, mode
// 0600: a certificate naming `tunneld` (tls.crt, tls.key) signed by a
// throwaway CA (ca.crt), a token file, an SSH key and an empty
// known_hosts.
func secretFiles(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	in := func(name string) string { return filepath.Join(dir, name) }
	tmp := func(name string) string { return filepath.Join(work, name) }
	writeFile(t, tmp("leaf.ext"), []byte("subjectAltName=DNS:tunneld\nbasicConstraints=critical,CA:FALSE\n"), 0o600)
	for _, name := range []string{"tls.key", "tls.crt", "ca.crt", "identity", "identity.pub"} {
		if err := os.Remove(in(name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	for _, argv := range [][]string{
		append(append([]string{"openssl", "req", "-x509"}, ec...), "-days", "1", "-subj", "/CN=tunneld test CA",
			"-keyout", tmp("ca.key"), "-out", in("ca.crt")),
		append(append([]string{"openssl", "req"}, ec...), "-subj", "/CN=tunneld",
			"-keyout", in("tls.key"), "-out", tmp("tls.csr")),
		{"openssl", "x509", "-req", "-in", tmp("tls.csr"), "-CA", in("ca.crt"), "-CAkey", tmp("ca.key"),
			"-days", "1", "-extfile", tmp("leaf.ext"), "-out", in("tls.crt")},
		{"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", in("identity")},
	} {
		if code, stdout, stderr := run(t, argv[0], argv[1:]...); code != 0 {
			t.Fatalf("%q: exit %d\n%s%s", argv, code, stdout, stderr)
		}
	}
	writeFile(t, in("known_hosts"), nil, 0o600)
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	writeFile(t, in("tokens"), []byte("probe:"+hex.EncodeToString(token)+"\n"), 0o600)
	for _, name := range []string{"tls.key", "tls.crt", "ca.crt", "identity"} {
		if err := os.Chmod(in(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// served is a tunneld started by serve, with the addresses it printed.
type served struct {
	cmd    *exec.Cmd
	exited chan error
	done   bool
	log    func() string
	// api is the API's HOST:PORT; health that of --health-listen, or "".
	api, health string
}

// listenFlags are the flags whose HOST:PORT serve rewrites to port 0, so
// tests run side by side.
var listenFlags = []string{"--listen", "--metrics-listen", "--health-listen"}

// serve starts tunneld with args (paths remapped through m, the ports of
// listenFlags replaced by 0) and waits for the lines that say where it
// listens. It is killed when the test ends unless stopped before.
func serve(t *testing.T, m mounts, args []string) *served {
	t.Helper()
	tunneld := binary(t, "TUNNELD_BIN")
	var argv []string
	wantHealth := false
	for i := 0; i < len(args); i++ {
		a, _ := m.remap(args[i])
		if i > 0 && slices.Contains(listenFlags, args[i-1]) {
			host, _, ok := strings.Cut(a, ":")
			if !ok {
				t.Fatalf("%s %s is not HOST:PORT", args[i-1], a)
			}
			a = host + ":0"
			wantHealth = wantHealth || args[i-1] == "--health-listen"
		}
		argv = append(argv, a)
	}
	s := &served{cmd: exec.Command(tunneld, argv...), exited: make(chan error, 1)}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "tunneld.log")
	stderr, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = stderr
	s.log = func() string { b, _ := os.ReadFile(logFile); return string(b) }
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.done {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	lines := make(chan string, 8)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			select {
			case lines <- scanner.Text():
			default:
			}
		}
		s.exited <- s.cmd.Wait()
	}()
	deadline := time.After(30 * time.Second)
	for s.api == "" || (wantHealth && s.health == "") {
		select {
		case line := <-lines:
			// Every interface includes loopback, where the probes go.
			local := func(addr string) string {
				return strings.Replace(addr, "0.0.0.0:", "127.0.0.1:", 1)
			}
			if addr, ok := strings.CutPrefix(line, "tunneld listening on "); ok {
				s.api = local(addr)
			} else if addr, ok := strings.CutPrefix(line, "tunneld health on "); ok {
				s.health = local(addr)
			}
		case err := <-s.exited:
			s.done = true
			t.Fatalf("tunneld %q exited: %v\n%s", argv, err, s.log())
		case <-deadline:
			t.Fatalf("tunneld %q did not print where it listens within 30s\n%s", argv, s.log())
		}
	}
	return s
}

// stop sends SIGTERM, after which tunneld must exit 0 within 30s.
func (s *served) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		s.done = true
		if err != nil {
			t.Errorf("tunneld on SIGTERM: %v\n%s", err, s.log())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("tunneld still running 30s after SIGTERM")
	}
}

// probeWithTunnelctl runs the tunnelctl command of an exec probe or a
// HEALTHCHECK (paths remapped through m, its --addr port replaced by the
// API's), which must pass, and again without its token, which must fail.
func probeWithTunnelctl(t *testing.T, s *served, m mounts, probe []string) {
	t.Helper()
	tunnelctl := binary(t, "TUNNELCTL_BIN")
	port := s.api[strings.LastIndex(s.api, ":")+1:]
	var probeArgs, unauthenticated []string
	for i := 1; i < len(probe); i++ {
		a, _ := m.remap(probe[i])
		if probe[i-1] == "--addr" {
			a = a[:strings.LastIndex(a, ":")+1] + port
		}
		probeArgs = append(probeArgs, a)
		if probe[i] != "--token-file" && probe[i-1] != "--token-file" {
			unauthenticated = append(unauthenticated, a)
		}
	}
	if code, out, errOut := run(t, tunnelctl, probeArgs...); code != 0 {
		t.Fatalf("the probe %q: exit %d\n%s%s\ntunneld's log:\n%s", probeArgs, code, out, errOut, s.log())
	}
	if code, _, _ := run(t, tunnelctl, unauthenticated...); code == 0 {
		t.Errorf("the probe passed without a token: %q", unauthenticated)
	}
}

// kubeletProbe does what kubelet's gRPC prober does: a plaintext
// connection to the address, with kubelet's user agent, one
// grpc.health.v1 Check of service within timeout; it passes only on
// SERVING. The reply (or the error) is returned for messages.
func kubeletProbe(addr, service string, timeout time.Duration) (bool, string) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("kube-probe/1.34"))
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	reply, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return false, err.Error()
	}
	return reply.GetStatus() == healthpb.HealthCheckResponse_SERVING, reply.GetStatus().String()
}
