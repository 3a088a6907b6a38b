package verify

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const dockerfile = "../container/Dockerfile"

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	line int
	op   string // upper case: FROM, COPY, CMD, ...
	args string
}

// parseDockerfile reads the instructions of path and splits them into
// stages (one per FROM).
func parseDockerfile(t *testing.T, path string) [][]instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages [][]instruction
	var cur strings.Builder
	start, n := 0, 0
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		n++
		line := scanner.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		op, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		ins := instruction{line: start, op: strings.ToUpper(op), args: strings.TrimSpace(args)}
		cur.Reset()
		if ins.op == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("%s:%d: %s before any FROM", path, ins.line, ins.op)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], ins)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() != 0 {
		t.Fatalf("%s ends inside a continued line", path)
	}
	return stages
}

// execForm decodes a JSON-array (exec form) argument list; the shell form
// is refused, since signals would reach a shell instead of tunneld.
func execForm(t *testing.T, ins instruction, args string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		t.Fatalf("%s:%d: %s must be a JSON array (exec form): %v", dockerfile, ins.line, ins.op, err)
	}
	return out
}

// ignored is the .dockerignore's patterns, for the top-level names it
// leaves out of the build context.
func ignored(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// image is what the runtime stage sets: the image's paths (COPY
// destinations and volumes) as files here, CMD and the healthcheck's
// command.
type image struct {
	m      mounts
	cmd    []string
	health []string
}

// readImage reads the runtime stage and checks its shape: exec-form
// ENTRYPOINT tunneld, files copied from the context that exist and that
// .dockerignore keeps, a fixed non-root user, a healthcheck through
// tunnelctl.
func readImage(t *testing.T) image {
	t.Helper()
	stages := parseDockerfile(t, dockerfile)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	final := stages[len(stages)-1]
	leftOut := ignored(t)
	root := t.TempDir()
	m := mounts{}
	var entrypoint, cmd, health []string
	user := ""
	for _, ins := range final {
		switch ins.op {
		case "COPY":
			fields := strings.Fields(ins.args)
			if strings.HasPrefix(fields[0], "--from=") {
				continue
			}
			if strings.HasPrefix(fields[0], "--") || len(fields) != 2 {
				t.Fatalf("%s:%d: this test reads COPY SRC DEST only", dockerfile, ins.line)
			}
			src, dest := fields[0], fields[1]
			if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
				t.Errorf("%s:%d: COPY %s: %v", dockerfile, ins.line, src, err)
			}
			for _, pattern := range leftOut {
				if src == pattern || strings.HasPrefix(src, strings.TrimSuffix(pattern, "/")+"/") {
					t.Errorf("%s:%d: COPY %s, which .dockerignore leaves out (%s)", dockerfile, ins.line, src, pattern)
				}
			}
			m[dest] = filepath.Join(repoRoot, src)
		case "VOLUME":
			for _, v := range execForm(t, ins, ins.args) {
				m[v] = filepath.Join(root, "volume", v)
				if err := os.MkdirAll(m[v], 0o700); err != nil {
					t.Fatal(err)
				}
			}
		case "USER":
			user = ins.args
		case "ENTRYPOINT":
			entrypoint = execForm(t, ins, ins.args)
		case "CMD":
			cmd = execForm(t, ins, ins.args)
		case "HEALTHCHECK":
			_, after, ok := strings.Cut(ins.args, "CMD ")
			if !ok {
				t.Fatalf("%s:%d: HEALTHCHECK without CMD", dockerfile, ins.line)
			}
			health = execForm(t, ins, after)
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("USER %q: want a fixed numeric non-root uid", user)
	}
	if !slices.Equal(entrypoint, []string{"tunneld"}) {
		t.Fatalf("ENTRYPOINT %q, want [\"tunneld\"]", entrypoint)
	}
	if len(health) < 2 || health[0] != "tunnelctl" || health[len(health)-1] != "status" {
		t.Errorf("HEALTHCHECK %q, want tunnelctl ... status", health)
	}
	// The secrets a user mounts read-only.
	m["/run/secrets"] = filepath.Join(root, "secrets")
	secretFiles(t, m["/run/secrets"])
	return image{m: m, cmd: cmd, health: health}
}

// CMD's flags pass `tunneld --check-config` with the config the image
// ships, and with the example config mounted over it.
func TestDockerfileFlagsPassCheckConfig(t *testing.T) {
	img := readImage(t)
	m, cmd := img.m, img.cmd
	got := checkConfig(t, m, cmd)
	if !strings.HasSuffix(got, "ok (0 hosts, 0 tunnels)") {
		t.Errorf("the image's config: %s, want no host and no tunnel", got)
	}
	// The same flags with the example config mounted over the image's.
	m["/etc/tunneld/hosts.toml"] = filepath.Join(repoRoot, "deploy/hosts.example.toml")
	checkConfig(t, m, cmd)
}

// tunneld started as the image starts it serves, its healthcheck passes
// (and fails without a token), and SIGTERM stops it with exit 0.
func TestDockerfileCmdServesAndHealthcheckPasses(t *testing.T) {
	img := readImage(t)
	s := serve(t, img.m, img.cmd)
	probeWithTunnelctl(t, s, img.m, img.health)
	s.stop(t)
}
