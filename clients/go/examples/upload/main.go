// Command upload copies a local file to a path on an SSH host through
// tunneld, as `ssh host 'cat > PATH' < FILE` would, then checks that it
// arrived intact.
//
//	go run ./examples/upload -addr 127.0.0.1:4522 FILE PATH
//
// The file is streamed as the standard input of `cat > PATH` with
// ExecStream, in chunks sent as the call takes them (a file of any size,
// never all in memory); then `sha256sum` runs on the host and its digest is
// compared with the one computed locally while sending. It exits 0 when they
// match, 1 with a message naming both digests when they do not (or when the
// upload failed), 2 on bad arguments.
//
// It dials tunneld in plaintext (loopback or a unix socket); for a token or
// TLS, take dialOptions from examples/quickstart.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// defaultChunkSize is how much one stdin message carries. tunneld keeps
// about one message per call in memory and the proto recommends at most
// 1 MiB; gRPC flow control blocks Send whenever the SSH channel is not
// taking input.
const defaultChunkSize = 256 << 10

func main() {
	addr := flag.String("addr", envOr("TUNNELD_ADDR", "127.0.0.1:4522"), "tunneld's API address (host:port, or unix:///path)")
	host := flag.String("host", "", "SSH host name known to tunneld (empty: the default host)")
	chunkSize := flag.Int("chunk-size", defaultChunkSize, "bytes per stdin message (1..1048576)")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on the whole run (raise it for large files on slow links)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: upload [flags] FILE PATH")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || *chunkSize < 1 || *chunkSize > 1<<20 {
		flag.Usage()
		os.Exit(2)
	}
	local, remote := flag.Arg(0), flag.Arg(1)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	err := run(ctx, *addr, *host, local, remote, *chunkSize)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, host, local, remote string, chunkSize int) error {
	file, err := os.Open(local)
	if err != nil {
		return err
	}
	defer file.Close()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := tunnelv1.NewTunnelServiceClient(conn)

	size, sent, err := upload(ctx, client, host, file, remote, chunkSize)
	if err != nil {
		return err
	}
	fmt.Printf("uploaded %d bytes to %s, sha256 %s\n", size, remote, sent)
	got, err := remoteSHA256(ctx, client, host, remote)
	if err != nil {
		return err
	}
	if got != sent {
		return fmt.Errorf("sha256 mismatch: %s is %s, %s on the host is %s", local, sent, remote, got)
	}
	fmt.Printf("verified: %s on the host has sha256 %s\n", remote, got)
	return nil
}

// upload writes everything src holds to path on host (empty: tunneld's
// default host) with `cat > PATH`, and returns the number of bytes sent and
// their SHA-256 in lowercase hex.
func upload(ctx context.Context, client tunnelv1.TunnelServiceClient, host string, src io.Reader, path string, chunkSize int) (int64, string, error) {
	// Cancelling this context ends the call, and with it a sender still
	// blocked in Send, whichever way this function returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.ExecStream(ctx)
	if err != nil {
		return 0, "", err
	}
	command := "cat > " + shellQuote(path)
	start := &tunnelv1.ExecStart{Host: host, Command: command}
	if err := stream.Send(&tunnelv1.ExecStreamRequest{Message: &tunnelv1.ExecStreamRequest_Start{Start: start}}); err != nil {
		return 0, "", fmt.Errorf("starting %q: %w", command, recvStatus(stream, err))
	}

	// Stdin goes out on its own goroutine while this one reads the
	// command's output: a command that writes while reading (or fails
	// before reading anything) never waits on us.
	hash := sha256.New()
	type sendResult struct {
		size int64
		err  error
	}
	sent := make(chan sendResult, 1)
	go func() {
		size, err := sendStdin(stream, io.TeeReader(src, hash), chunkSize)
		sent <- sendResult{size, err}
	}()

	var stderr strings.Builder
	var exit *tunnelv1.ExitStatus
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, "", fmt.Errorf("writing %s on %s: %w", path, hostName(host), err)
		}
		switch ev := msg.GetEvent().(type) {
		case *tunnelv1.ExecStreamResponse_Stderr:
			stderr.Write(ev.Stderr)
		case *tunnelv1.ExecStreamResponse_Exit:
			exit = ev.Exit
		}
		// `cat > PATH` prints nothing on stdout.
	}
	if failure := describeFailure(exit, stderr.String()); failure != "" {
		return 0, "", fmt.Errorf("writing %s on %s: `%s` %s", path, hostName(host), command, failure)
	}
	// The command exited 0 after reading to end-of-file, so everything was
	// sent; an error here is a local read error, which ended stdin early.
	res := <-sent
	if res.err != nil {
		return 0, "", res.err
	}
	return res.size, hex.EncodeToString(hash.Sum(nil)), nil
}

// sendStdin sends src as stdin messages of up to chunkSize bytes, then
// stdin_eof, and returns how many bytes it sent. Closing the sending side
// (CloseSend) would end stdin too; stdin_eof says so explicitly.
func sendStdin(stream tunnelv1.TunnelService_ExecStreamClient, src io.Reader, chunkSize int) (int64, error) {
	var size int64
	for {
		// A new buffer each time: grpc may still hold a message after
		// Send returns (for stats handlers), so none is reused.
		buf := make([]byte, chunkSize)
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if serr := stream.Send(&tunnelv1.ExecStreamRequest{Message: &tunnelv1.ExecStreamRequest_Stdin{Stdin: buf[:n]}}); serr != nil {
				// io.EOF: the call ended (the command exited early); the
				// receiving side reports why.
				return size, nil
			}
			size += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			_ = stream.CloseSend()
			return size, fmt.Errorf("reading the local file: %w", err)
		}
	}
	_ = stream.Send(&tunnelv1.ExecStreamRequest{Message: &tunnelv1.ExecStreamRequest_StdinEof{StdinEof: true}})
	return size, stream.CloseSend()
}

// remoteSHA256 runs sha256sum on host over path and returns its digest.
// Reading the file from stdin makes sha256sum print `HEX  -` whatever the
// path holds (it escapes some names).
func remoteSHA256(ctx context.Context, client tunnelv1.TunnelServiceClient, host, path string) (string, error) {
	command := "sha256sum < " + shellQuote(path)
	stream, err := client.Exec(ctx, &tunnelv1.ExecRequest{Host: host, Command: command})
	if err != nil {
		return "", err
	}
	var stdout, stderr strings.Builder
	var exit *tunnelv1.ExitStatus
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("checking %s on %s: %w", path, hostName(host), err)
		}
		switch ev := msg.GetEvent().(type) {
		case *tunnelv1.ExecResponse_Stdout:
			stdout.Write(ev.Stdout)
		case *tunnelv1.ExecResponse_Stderr:
			stderr.Write(ev.Stderr)
		case *tunnelv1.ExecResponse_Exit:
			exit = ev.Exit
		}
	}
	if failure := describeFailure(exit, stderr.String()); failure != "" {
		return "", fmt.Errorf("checking %s on %s: `%s` %s", path, hostName(host), command, failure)
	}
	fields := strings.Fields(stdout.String())
	if len(fields) == 0 || len(fields[0]) != sha256.Size*2 {
		return "", fmt.Errorf("`%s` printed %q, not a SHA-256 digest", command, stdout.String())
	}
	return strings.ToLower(fields[0]), nil
}

// describeFailure returns "" when a command exited 0, else how it failed
// and what it said on stderr.
func describeFailure(exit *tunnelv1.ExitStatus, stderr string) string {
	said := strings.TrimSpace(stderr)
	if said != "" {
		said = ": " + said
	}
	switch {
	case exit == nil:
		return "ended without an exit status"
	case exit.GetSignal() != "":
		return "was killed by SIG" + exit.GetSignal() + said
	case exit.GetCode() != 0:
		return fmt.Sprintf("exited with %d%s", exit.GetCode(), said)
	}
	return ""
}

// recvStatus turns the io.EOF a Send returns once the call has ended into
// the call's real status, which Recv reports.
func recvStatus(stream tunnelv1.TunnelService_ExecStreamClient, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
}

// shellQuote quotes s for a POSIX shell: the remote command line is run by
// the user's login shell, as `ssh host 'command'` runs it.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func hostName(host string) string {
	if host == "" {
		return "the default host"
	}
	return host
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
