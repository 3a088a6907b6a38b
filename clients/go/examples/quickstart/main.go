// Command quickstart shows the tunnel.v1 API from Go: it opens a local
// forward to a target, sends a line through it and prints what comes back,
// streams a command's output, lists the tunnels and closes the one it opened.
//
//	go run ./examples/quickstart -addr 127.0.0.1:4522 -target db.internal:5432
//
// The target is a host:port as seen from the SSH server (as with `ssh -L`).
// With an echo server as the target the line comes back unchanged.
//
// Credentials come from the environment, as tunnelctl reads them:
//
//	TUNNELD_TOKEN            a token of tunneld's --token-file, sent as
//	                         "authorization: Bearer TOKEN"
//	TUNNELD_TOKEN_FILE       else a file holding it on its first line
//	TUNNELD_TLS_CA           PEM CA bundle that signed tunneld's certificate
//	                         (default: the system's roots)
//	TUNNELD_TLS_CERT/_KEY    client certificate and key, for a tunneld with
//	                         --tls-client-ca
//	TUNNELD_TLS_SERVER_NAME  the name to verify tunneld's certificate against,
//	                         when it is not the host of the address
//
// Any TUNNELD_TLS_* variable, or an https:// address, selects TLS. Without
// TLS a token is sent only to a loopback address or a unix socket.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

func main() {
	addr := flag.String("addr", envOr("TUNNELD_ADDR", "127.0.0.1:4522"), "tunneld's API address (host:port, or unix:///path)")
	host := flag.String("host", "", "SSH host name known to tunneld (empty: the default host)")
	target := flag.String("target", "", "host:port the SSH server connects to for the forward (required)")
	command := flag.String("command", "uname -a", "command to run on the SSH host")
	timeout := flag.Duration("timeout", 30*time.Second, "bound on the whole run")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "quickstart: -target host:port is required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *addr, *host, *target, *command); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, host, target, command string) error {
	targetHost, targetPort, err := splitHostPort(target)
	if err != nil {
		return err
	}

	// Plaintext gRPC on loopback or a unix socket, or TLS, with or without
	// a token: whatever the environment says.
	dialTarget, opts, err := dialOptions(addr)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(dialTarget, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := tunnelv1.NewTunnelServiceClient(conn)

	// 1. A local forward on a port tunneld picks (ssh -L 0:target).
	opened, err := client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{
		Host:       host,
		RemoteHost: targetHost,
		RemotePort: targetPort,
	})
	if err != nil {
		return fmt.Errorf("opening the forward: %w", err)
	}
	tun := opened.GetTunnel()
	local := net.JoinHostPort(tun.GetLocal().GetHost(), strconv.Itoa(int(tun.GetLocal().GetPort())))
	fmt.Printf("opened %s: %s -> %s\n", tun.GetId(), local, target)

	// 2. Bytes through it.
	if err := sendLine(ctx, local, "hello through tunneld\n"); err != nil {
		return err
	}

	// 3. A command, its output streamed as it arrives.
	if err := execCommand(ctx, client, host, command); err != nil {
		return err
	}

	// 4. Everything open.
	list, err := client.List(ctx, &tunnelv1.ListRequest{})
	if err != nil {
		return fmt.Errorf("listing: %w", err)
	}
	for _, t := range list.GetTunnels() {
		fmt.Printf("tunnel %s %s via %s: %s:%d -> %s:%d\n", t.GetId(), t.GetKind(), t.GetHost(),
			t.GetLocal().GetHost(), t.GetLocal().GetPort(), t.GetRemote().GetHost(), t.GetRemote().GetPort())
	}

	// 5. Close ours; the response carries its final counters.
	closed, err := client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()})
	if err != nil {
		return fmt.Errorf("closing %s: %w", tun.GetId(), err)
	}
	c := closed.GetTunnel().GetCounters()
	fmt.Printf("closed %s: %d connection(s), %d bytes to target, %d bytes back\n",
		tun.GetId(), c.GetTotalConnections(), c.GetBytesToTarget(), c.GetBytesFromTarget())
	return nil
}

// sendLine connects to the forward, sends line, half-closes, and prints
// whatever the target answers until it closes (or five seconds pass).
func sendLine(ctx context.Context, addr, line string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connecting to the forward: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, line); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(conn)
	var nerr net.Error
	if err != nil && !(errors.As(err, &nerr) && nerr.Timeout()) {
		return fmt.Errorf("reading the reply: %w", err)
	}
	fmt.Printf("sent %d bytes, got back %d: %q\n", len(line), len(reply), reply)
	return nil
}

// execCommand runs command and copies its stdout and stderr as they arrive.
func execCommand(ctx context.Context, client tunnelv1.TunnelServiceClient, host, command string) error {
	stream, err := client.Exec(ctx, &tunnelv1.ExecRequest{Host: host, Command: command})
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	fmt.Printf("$ %s\n", command)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("exec %q: %w", command, err)
		}
		switch ev := msg.GetEvent().(type) {
		case *tunnelv1.ExecResponse_Stdout:
			os.Stdout.Write(ev.Stdout)
		case *tunnelv1.ExecResponse_Stderr:
			os.Stderr.Write(ev.Stderr)
		case *tunnelv1.ExecResponse_Exit:
			if sig := ev.Exit.GetSignal(); sig != "" {
				fmt.Printf("killed by SIG%s\n", sig)
			} else {
				fmt.Printf("exit code %d\n", ev.Exit.GetCode())
			}
		}
	}
}

// dialOptions returns the target to dial for addr (HOST:PORT,
// https://HOST:PORT or unix:/PATH) and the credentials the environment names.
func dialOptions(addr string) (string, []grpc.DialOption, error) {
	token, err := tokenFromEnv()
	if err != nil {
		return "", nil, err
	}
	ca, cert, key, serverName := os.Getenv("TUNNELD_TLS_CA"), os.Getenv("TUNNELD_TLS_CERT"),
		os.Getenv("TUNNELD_TLS_KEY"), os.Getenv("TUNNELD_TLS_SERVER_NAME")
	target, useTLS := strings.CutPrefix(addr, "https://")
	target = strings.TrimPrefix(target, "http://")
	useTLS = useTLS || ca != "" || cert != "" || key != "" || serverName != ""

	var transport credentials.TransportCredentials
	switch {
	case useTLS:
		cfg, err := tlsConfig(ca, cert, key, serverName)
		if err != nil {
			return "", nil, err
		}
		transport = credentials.NewTLS(cfg)
	case token != "":
		// Plaintext like insecure, but the connection fails unless its far
		// end is on this machine (a loopback address or a unix socket), so
		// the token never crosses a network in the clear.
		transport = local.NewCredentials()
	default:
		transport = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(transport)}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: token, requireTLS: useTLS}))
	}
	return target, opts, nil
}

// tlsConfig trusts the CA bundle in caFile (none: the system's roots),
// presents the client certificate in certFile and keyFile if given, and
// verifies tunneld's certificate against serverName (none: the host dialed).
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TUNNELD_TLS_CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TUNNELD_TLS_CA: no PEM certificate in %s", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("TUNNELD_TLS_CERT and TUNNELD_TLS_KEY go together: set both or neither")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tokenFromEnv returns $TUNNELD_TOKEN, else the first line of the file
// $TUNNELD_TOKEN_FILE names that is neither blank nor a # comment (a bare
// token, or NAME:TOKEN as in tunneld's --token-file), else "".
func tokenFromEnv() (string, error) {
	if token := strings.TrimSpace(os.Getenv("TUNNELD_TOKEN")); token != "" {
		return token, nil
	}
	path := os.Getenv("TUNNELD_TOKEN_FILE")
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("TUNNELD_TOKEN_FILE: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, token, ok := strings.Cut(line, ":"); ok && tokenName.MatchString(name) {
			return token, nil
		}
		return line, nil
	}
	return "", fmt.Errorf("TUNNELD_TOKEN_FILE: %s holds no token", path)
}

// tokenName is what may precede the token on a NAME:TOKEN line.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9._@-]+$`)

// bearerToken sends "authorization: Bearer TOKEN" with every call.
type bearerToken struct {
	token string
	// requireTLS is false only with local credentials (loopback or a unix
	// socket): grpc refuses to send credentials that require transport
	// security over a connection without it.
	requireTLS bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.requireTLS }

func splitHostPort(s string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("-target %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("-target %q: port must be 1..65535", s)
	}
	return host, uint32(p), nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
