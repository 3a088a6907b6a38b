package verify

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// serveAndProbe starts tunneld with args (paths remapped through m, the
// --listen and --metrics-listen ports replaced by 0 so tests run side by
// side), runs the health
// probe against it (the probe's --addr port replaced by the real one),
// which must pass, and again without its token, which must fail; then
// stops tunneld with SIGTERM, which must exit 0.
func serveAndProbe(t *testing.T, m mounts, args, probe []string) {
	t.Helper()
	tunneld := binary(t, "TUNNELD_BIN")
	tunnelctl := binary(t, "TUNNELCTL_BIN")
	var argv []string
	for i := 0; i < len(args); i++ {
		a, _ := m.remap(args[i])
		if i > 0 && (args[i-1] == "--listen" || args[i-1] == "--metrics-listen") {
			host, _, ok := strings.Cut(a, ":")
			if !ok {
				t.Fatalf("%s %s is not HOST:PORT", args[i-1], a)
			}
			a = host + ":0"
		}
		argv = append(argv, a)
	}
	cmd := exec.Command(tunneld, argv...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "tunneld.log")
	stderr, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	log := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	lines := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			select {
			case lines <- scanner.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	var port string
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "tunneld listening on ")
		if !ok {
			t.Fatalf("tunneld printed %q", line)
		}
		port = addr[strings.LastIndex(addr, ":")+1:]
	case err := <-exited:
		stopped = true
		t.Fatalf("tunneld %q exited: %v\n%s", argv, err, log())
	case <-time.After(30 * time.Second):
		t.Fatalf("tunneld %q did not listen within 30s\n%s", argv, log())
	}

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
		t.Fatalf("the probe %q: exit %d\n%s%s\ntunneld's log:\n%s", probeArgs, code, out, errOut, log())
	}
	if code, _, _ := run(t, tunnelctl, unauthenticated...); code == 0 {
		t.Errorf("the probe passed without a token: %q", unauthenticated)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("tunneld on SIGTERM: %v\n%s", err, log())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("tunneld still running 30s after SIGTERM")
	}
}
