package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// execResult is everything an Exec call returned.
type execResult struct {
	stdout, stderr []byte
	exit           *tunnelv1.ExitStatus
	err            error // the call's final error; nil when it ended with OK
}

// collect reads an Exec stream to its end. It checks that the exit status
// is the last message and comes once.
func collect(t *testing.T, stream tunnelv1.TunnelService_ExecClient) execResult {
	t.Helper()
	var r execResult
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		if r.exit != nil {
			t.Fatalf("message after the exit status: %v", msg)
		}
		switch ev := msg.GetEvent().(type) {
		case *tunnelv1.ExecResponse_Stdout:
			r.stdout = append(r.stdout, ev.Stdout...)
		case *tunnelv1.ExecResponse_Stderr:
			r.stderr = append(r.stderr, ev.Stderr...)
		case *tunnelv1.ExecResponse_Exit:
			r.exit = ev.Exit
		default:
			t.Fatalf("unexpected Exec message %v", msg)
		}
	}
}

// run execs req on the testbed and collects the whole call.
func run(ctx context.Context, t *testing.T, req *tunnelv1.ExecRequest) execResult {
	t.Helper()
	stream, err := bed.client.Exec(ctx, req)
	if err != nil {
		t.Fatalf("Exec %q: %v", req.GetCommand(), err)
	}
	return collect(t, stream)
}

// runOK execs command and fails unless it exits 0; returns its stdout.
func runOK(ctx context.Context, t *testing.T, command string) string {
	t.Helper()
	r := run(ctx, t, &tunnelv1.ExecRequest{Command: command})
	if r.err != nil || r.exit.GetCode() != 0 || r.exit.GetSignal() != "" {
		t.Fatalf("Exec %q: exit %v, error %v, stderr %q", command, r.exit, r.err, r.stderr)
	}
	return string(r.stdout)
}

func TestExecSeparatesStdoutStderrAndExitCode(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := run(ctx, t, &tunnelv1.ExecRequest{Command: "echo out; echo err >&2; echo more; exit 3"})
	if r.err != nil {
		t.Fatalf("Exec ended with %v", r.err)
	}
	if got := string(r.stdout); got != "out\nmore\n" {
		t.Errorf("stdout = %q, want %q", got, "out\nmore\n")
	}
	if got := string(r.stderr); got != "err\n" {
		t.Errorf("stderr = %q, want %q", got, "err\n")
	}
	want := &tunnelv1.ExitStatus{Status: &tunnelv1.ExitStatus_Code{Code: 3}}
	if !proto.Equal(r.exit, want) {
		t.Errorf("exit = %v, want %v", r.exit, want)
	}
}

func TestExecReportsTheKillingSignal(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := run(ctx, t, &tunnelv1.ExecRequest{Command: "kill -KILL $$"})
	if r.err != nil {
		t.Fatalf("Exec ended with %v", r.err)
	}
	if r.exit.GetSignal() != "KILL" {
		t.Errorf("exit = %v, want signal KILL", r.exit)
	}
}

func TestExecStreamsStdoutBeforeTheCommandEnds(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// The command prints, then waits for a gate file that the test creates
	// only after it has received that first output: it cannot end before.
	gate := "/tmp/tunneld-go-e2e-gate-" + randomToken(t)
	command := fmt.Sprintf(`echo first; i=0; while [ ! -e %[1]s ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; if [ -e %[1]s ]; then rm -f %[1]s; echo second; else echo gave-up; fi`, gate)
	stream, err := bed.client.Exec(ctx, &tunnelv1.ExecRequest{Command: command})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatalf("first Exec message: %v", err)
	}
	if got := string(msg.GetStdout()); got != "first\n" {
		t.Fatalf("first Exec message = %v, want stdout %q", msg, "first\n")
	}
	runOK(ctx, t, "touch "+gate)
	r := collect(t, stream)
	if r.err != nil || r.exit.GetCode() != 0 || string(r.stdout) != "second\n" {
		t.Fatalf("after the gate: stdout %q, exit %v, error %v", r.stdout, r.exit, r.err)
	}
}

func TestExecStdinArrivesIntact(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stdin := randomBytes(t, 256<<10)
	r := run(ctx, t, &tunnelv1.ExecRequest{Command: "cat", Stdin: stdin})
	if r.err != nil || r.exit.GetCode() != 0 {
		t.Fatalf("cat: exit %v, error %v, stderr %q", r.exit, r.err, r.stderr)
	}
	if !bytes.Equal(r.stdout, stdin) {
		t.Fatalf("cat echoed %d bytes that differ from the %d bytes of stdin", len(r.stdout), len(stdin))
	}
}

func TestExecSetsEnvironment(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	env := map[string]string{
		"GREETING": "hello world",
		"TRICKY":   `it's "$HOME" and \n; echo not-run`,
	}
	r := run(ctx, t, &tunnelv1.ExecRequest{Command: `printf '%s|%s' "$GREETING" "$TRICKY"`, Env: env})
	if r.err != nil || r.exit.GetCode() != 0 {
		t.Fatalf("exit %v, error %v, stderr %q", r.exit, r.err, r.stderr)
	}
	want := env["GREETING"] + "|" + env["TRICKY"]
	if got := string(r.stdout); got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestExecTimeoutIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	start := time.Now()
	r := run(ctx, t, &tunnelv1.ExecRequest{
		Command: "echo before; sleep 5; echo after",
		Timeout: durationpb.New(500 * time.Millisecond),
	})
	wantCode(t, r.err, codes.DeadlineExceeded)
	if got := string(r.stdout); got != "before\n" {
		t.Errorf("stdout = %q, want the output sent before the timeout, %q", got, "before\n")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the call ended after %v, want soon after the 500ms timeout", took)
	}
}

func TestExecCancelEndsTheCallPromptly(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := bed.client.Exec(callCtx, &tunnelv1.ExecRequest{Command: "echo started; sleep 30"})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if msg, err := stream.Recv(); err != nil || string(msg.GetStdout()) != "started\n" {
		t.Fatalf("first message = %v, %v; want stdout %q", msg, err, "started\n")
	}
	cancel()
	start := time.Now()
	_, err = stream.Recv()
	wantCode(t, err, codes.Canceled)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the cancelled call ended after %v", took)
	}
	// The daemon still serves.
	if out := runOK(ctx, t, "echo still-serving"); out != "still-serving\n" {
		t.Errorf("Exec after the cancel: stdout %q", out)
	}
}

func TestExecCancelStopsTheRemoteCommand(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// A command that writes: once tunneld closes the channel on cancel, its
	// next write fails and it ends, whether or not sshd delivers signals
	// (it refuses them for root sessions).
	marker := "tunneld-go-e2e-" + randomToken(t)
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := bed.client.Exec(callCtx, &tunnelv1.ExecRequest{
		Command: fmt.Sprintf("while echo %s; do sleep 0.1; done", marker),
	})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}
	cancel()
	wantCode(t, drain(stream), codes.Canceled)
	// The brackets keep pgrep from matching the shell running pgrep itself.
	pgrep := fmt.Sprintf("pgrep -f '[%c]%s' || true", marker[0], marker[1:])
	poll(ctx, t, "the remote command to end", func() (bool, error) {
		out := runOK(ctx, t, pgrep)
		if strings.TrimSpace(out) == "" {
			return true, nil
		}
		return false, fmt.Errorf("still running as pids %q", strings.Fields(out))
	})
}

// drain reads a stream until it ends and returns its final error.
func drain(stream tunnelv1.TunnelService_ExecClient) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}
