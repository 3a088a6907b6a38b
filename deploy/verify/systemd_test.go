package verify

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	unitFile = "../systemd/tunneld.service"
	// Where the install steps put the binary; ExecStart must name it.
	installedBinary = "/usr/local/bin/tunneld"
)

// unitSetting is the value of the first `key=` line of a unit file's text,
// continuation lines joined.
func unitSetting(t *testing.T, text, key string) string {
	t.Helper()
	joined := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(text, " ")
	for _, line := range strings.Split(joined, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no %s=", unitFile, key)
	return ""
}

func systemdVersion(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "--version").Output()
	if err != nil {
		t.Fatalf("systemd-analyze --version: %v (apt-get install systemd)", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		t.Fatalf("systemd-analyze --version: %q", out)
	}
	v, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("systemd-analyze --version: %q", out)
	}
	return v
}

// `systemd-analyze verify` on the unit, its ExecStart pointed at the built
// tunneld (verify checks that the binary exists and is executable). verify
// exits 0 on unknown keys and values, so any output fails the test, except
// the one line systemd < 253 prints for Type=notify-reload.
func TestUnitVerifies(t *testing.T) {
	tunneld := binary(t, "TUNNELD_BIN")
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(unitSetting(t, string(text), "ExecStart"), installedBinary+" ") {
		t.Fatalf("ExecStart does not run %s", installedBinary)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "tunneld.service")
	writeFile(t, unit, []byte(strings.ReplaceAll(string(text), installedBinary, tunneld)), 0o644)
	code, stdout, stderr := run(t, "systemd-analyze", "verify", "--man=no", unit)
	var unexpected []string
	for _, line := range strings.Split(strings.TrimSpace(stdout+stderr), "\n") {
		if line == "" {
			continue
		}
		if systemdVersion(t) < 253 && strings.HasSuffix(line, "Failed to parse service type, ignoring: notify-reload") {
			continue
		}
		unexpected = append(unexpected, line)
	}
	if code != 0 || len(unexpected) > 0 {
		t.Fatalf("systemd-analyze verify: exit %d:\n%s", code, strings.Join(unexpected, "\n"))
	}
	if unitSetting(t, string(text), "Type") != "notify-reload" {
		t.Errorf("Type= must be notify-reload: tunneld sends READY, RELOADING and STOPPING")
	}
}

// The verify check is not blind: a misspelled key makes it fail.
func TestUnitVerifyCatchesAMisspelledKey(t *testing.T) {
	tunneld := binary(t, "TUNNELD_BIN")
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.ReplaceAll(string(text), installedBinary, tunneld)
	bad = strings.Replace(bad, "\nProtectSystem=", "\nProtectSytem=", 1)
	unit := filepath.Join(t.TempDir(), "tunneld.service")
	writeFile(t, unit, []byte(bad), 0o644)
	_, stdout, stderr := run(t, "systemd-analyze", "verify", "--man=no", unit)
	if !strings.Contains(stdout+stderr, "Unknown key 'ProtectSytem'") {
		t.Fatalf("verify did not report the misspelled key:\n%s%s", stdout, stderr)
	}
}

// ExecStart's flags pass `tunneld --check-config` with the example config,
// the credentials (%d) standing in a temp dir.
func TestUnitFlagsPassCheckConfig(t *testing.T) {
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Fields(unitSetting(t, string(text), "ExecStart"))
	creds := t.TempDir()
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, "LoadCredential="); ok {
			name, _, _ := strings.Cut(v, ":")
			writeFile(t, filepath.Join(creds, name), []byte("# stand-in\n"), 0o400)
		}
	}
	var args []string
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, "%d/") {
			path := filepath.Join(creds, strings.TrimPrefix(a, "%d/"))
			if _, err := os.Stat(path); err != nil {
				t.Errorf("ExecStart uses %s, which no LoadCredential= provides", a)
			}
			a = path
		}
		if strings.Contains(a, "%") {
			t.Fatalf("ExecStart: specifier in %q that this test does not stand in for", a)
		}
		args = append(args, a)
	}
	m := mounts{
		"/etc/tunneld/hosts.toml": filepath.Join(repoRoot, "deploy/hosts.example.toml"),
		"/run/tunneld":            t.TempDir(),
		creds:                     creds,
	}
	checkConfig(t, m, args)
}
