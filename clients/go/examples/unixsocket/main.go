// Command unixsocket opens a local forward whose listening end is a
// unix-domain socket instead of a TCP port (`ssh -L /path/to.sock:HOST:PORT`),
// sends a message through it and prints the reply, then closes the tunnel and
// shows that tunneld removed the socket file.
//
//	go run ./examples/unixsocket -addr 127.0.0.1:4522 -target-host db.internal -target-port 5432
//
// The socket is created by tunneld (mode 0600) at a path in a temporary
// directory this program makes, so tunneld must run on this machine. The
// target is a host and port as seen from the SSH server. The message is sent,
// the socket's sending side is closed (as a file ends), and everything the
// target answers until it closes is printed; an echo server sends the message
// back.
//
// It dials tunneld in plaintext (loopback or a unix socket); for a token or
// TLS, take dialOptions from examples/quickstart.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

func main() {
	addr := flag.String("addr", envOr("TUNNELD_ADDR", "127.0.0.1:4522"), "tunneld's API address (host:port, or unix:///path)")
	host := flag.String("host", "", "SSH host name known to tunneld (empty: the default host)")
	targetHost := flag.String("target-host", "127.0.0.1", "host the SSH server connects to")
	targetPort := flag.Uint("target-port", 0, "port the SSH server connects to (required)")
	message := flag.String("message", "hello through a unix socket\n", "bytes to send through the forward")
	timeout := flag.Duration("timeout", 30*time.Second, "bound on the whole run")
	flag.Parse()
	if *targetPort < 1 || *targetPort > 65535 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "unixsocket: -target-port 1..65535 is required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *addr, *host, *targetHost, uint32(*targetPort), []byte(*message)); err != nil {
		fmt.Fprintln(os.Stderr, "unixsocket:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, host, targetHost string, targetPort uint32, message []byte) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := tunnelv1.NewTunnelServiceClient(conn)

	// A private directory for the socket. Keep the path short: a unix
	// socket's path has to fit in about 100 bytes.
	dir, err := os.MkdirTemp("", "tunneld-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "forward.sock")

	// ssh -L PATH:TARGET_HOST:TARGET_PORT
	resp, err := client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{
		Host:       host,
		LocalPath:  path,
		RemoteHost: targetHost,
		RemotePort: targetPort,
	})
	if err != nil {
		return fmt.Errorf("OpenLocalForward: %w", err)
	}
	tun := resp.GetTunnel()
	fmt.Printf("opened %s: %s -> %s:%d\n", tun.GetId(), tun.GetLocal().GetPath(), tun.GetRemote().GetHost(), tun.GetRemote().GetPort())
	if fi, err := os.Stat(path); err == nil {
		fmt.Printf("%s is a socket: %v\n", path, fi.Mode()) // Srw-------: only this user can connect
	}

	reply, sendErr := exchange(ctx, tun.GetLocal().GetPath(), message)
	if sendErr == nil {
		fmt.Printf("sent %d bytes, got back %d: %q\n", len(message), len(reply), reply)
	}

	// Close the tunnel whatever happened: tunneld stops listening and
	// removes the socket file.
	closeResp, err := client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()})
	if err != nil {
		return errors.Join(sendErr, fmt.Errorf("Close: %w", err))
	}
	if sendErr != nil {
		return sendErr
	}
	// The socket file went with the tunnel.
	id := closeResp.GetTunnel().GetId()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("closed %s, but %s is still there (stat: %v)", id, path, err)
	}
	fmt.Printf("closed %s: %s removed\n", id, path)
	return nil
}

// exchange connects to the unix socket at path, sends message, closes its
// sending side and returns everything read until the other end closes.
func exchange(ctx context.Context, path string, message []byte) ([]byte, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
	}
	if _, err := c.Write(message); err != nil {
		return nil, err
	}
	// Half-close: the target reads end-of-file and can answer and close.
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(c)
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
