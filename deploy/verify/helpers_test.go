package verify

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// binary is the path in the environment variable env, which must name an
// executable file: a missing tool fails the test, it never skips it.
func binary(t *testing.T, env string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		t.Fatalf("%s is not set: run scripts/check-deploy.sh, or set it to the built binary", env)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable file (%v)", env, path, err)
	}
	return path
}

// run runs name with args, bounded in time, and returns its exit code,
// stdout and stderr.
func run(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %q took over 60s", name, args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// mounts maps absolute paths inside a container or unit (a mount point,
// or a single file) to the files and directories standing for them on
// this machine.
type mounts map[string]string

// remap rewrites an absolute path under one of the mounts (the longest
// that matches) to its place on this machine; other strings are returned
// as they are, and so are absolute paths under no mount.
func (m mounts) remap(arg string) (string, bool) {
	if !strings.HasPrefix(arg, "/") {
		return arg, false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		if arg == k {
			return m[k], true
		}
		if strings.HasPrefix(arg, strings.TrimSuffix(k, "/")+"/") {
			return filepath.Join(m[k], strings.TrimPrefix(arg, k)), true
		}
	}
	return arg, false
}

// checkConfig runs `tunneld ARGS --check-config FILE` where FILE is the
// value of --config in args (which is taken out: the two conflict), after
// remapping every absolute path through m, and fails unless tunneld
// accepts it. It returns tunneld's line, e.g. "FILE: ok (1 hosts, 1
// tunnels)".
func checkConfig(t *testing.T, m mounts, args []string) string {
	t.Helper()
	tunneld := binary(t, "TUNNELD_BIN")
	var out []string
	config := ""
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--config" && i+1 < len(args) {
			config = args[i+1]
			i++
			continue
		}
		if strings.HasPrefix(arg, "--config=") {
			config = strings.TrimPrefix(arg, "--config=")
			continue
		}
		mapped, ok := m.remap(arg)
		if strings.HasPrefix(arg, "/") && !ok {
			t.Fatalf("%s is not under any mount or file of the deployment (%v)", arg, keys(m))
		}
		out = append(out, mapped)
	}
	if config == "" {
		t.Fatalf("no --config in %q", args)
	}
	file, ok := m.remap(config)
	if !ok {
		t.Fatalf("--config %s is not under any mount of the deployment (%v)", config, keys(m))
	}
	out = append(out, "--check-config", file)
	code, stdout, stderr := run(t, tunneld, out...)
	if code != 0 || !strings.Contains(stdout, ": ok (") {
		t.Fatalf("tunneld %q: exit %d\nstdout: %s\nstderr: %s", out, code, stdout, stderr)
	}
	return strings.TrimSpace(stdout)
}

func keys(m mounts) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// writeFile writes data to path, creating its directory.
func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func TestRemapTakesTheLongestMount(t *testing.T) {
	m := mounts{"/run/secrets": "/tmp/a", "/run/secrets/x": "/tmp/b", "/etc": "/tmp/c"}
	for arg, want := range map[string]string{
		"/run/secrets/y":     "/tmp/a/y",
		"/run/secrets/x":     "/tmp/b",
		"/run/secrets-other": "/run/secrets-other",
		"--flag":             "--flag",
		"/etc/tunneld/h":     "/tmp/c/tunneld/h",
	} {
		if got, _ := m.remap(arg); got != want {
			t.Errorf("remap(%q) = %q, want %q", arg, got, want)
		}
	}
}
