package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// Tokens and TLS from Go: against a tunneld that requires a bearer token
// (`testbed --token`) and one that serves mutual TLS (`testbed --tls`), the
// calls a client makes with grpc-go's own credentials, and the quickstart
// example driven by the environment variables tunnelctl reads.

// bearer is per-RPC credentials sending "authorization: Bearer TOKEN".
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: the tests pair it with local
// credentials (loopback only) or TLS.
func (bearer) RequireTransportSecurity() bool { return false }

// dial connects to addr with opts; the connection closes with the test.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// wrongToken is a token of the right shape that tunneld does not know: the
// real one with its last character changed.
func wrongToken(token string) string {
	last := "A"
	if strings.HasSuffix(token, "A") {
		last = "B"
	}
	return token[:len(token)-1] + last
}

// checkHealth is grpc.health.v1.Health/Check of service; it fails unless
// the answer is SERVING.
func checkHealth(ctx context.Context, conn *grpc.ClientConn, service string) error {
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health of %q is %v, want SERVING", service, resp.GetStatus())
	}
	return err
}

// exitCode is the exit status of a process that ended with err (0 for nil,
// -1 when it did not run or exit).
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		return -1
	}
}

func TestTokenIsRequired(t *testing.T) {
	t.Parallel()
	tb := testbedWith(t, "--token")
	addr, token := tb.vars["TUNNELD_ADDR"], tb.vars["TUNNELD_TOKEN"]
	anonymous := dial(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	anonClient := tunnelv1.NewTunnelServiceClient(anonymous)

	t.Run("no token is unauthenticated and says how to send one", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		calls := map[string]func() error{
			"List": func() error {
				_, err := anonClient.List(ctx, &tunnelv1.ListRequest{})
				return err
			},
			"GetInfo": func() error {
				_, err := anonClient.GetInfo(ctx, &tunnelv1.GetInfoRequest{})
				return err
			},
			"OpenLocalForward": func() error {
				_, err := anonClient.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{RemoteHost: "127.0.0.1", RemotePort: 9})
				return err
			},
			"Exec": func() error {
				stream, err := anonClient.Exec(ctx, &tunnelv1.ExecRequest{Command: "true"})
				if err != nil {
					return err
				}
				return drain(stream)
			},
		}
		for name, call := range calls {
			st := wantCode(t, call(), codes.Unauthenticated)
			for _, want := range []string{"requires a token", `"authorization: Bearer <token>"`} {
				if !strings.Contains(st.Message(), want) {
					t.Errorf("%s: message %q does not say %q", name, st.Message(), want)
				}
			}
		}
	})

	t.Run("token as per-RPC credentials is accepted by every kind of call", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// Local credentials: plaintext, but only to loopback or a unix socket.
		conn := dial(t, addr, grpc.WithTransportCredentials(local.NewCredentials()), grpc.WithPerRPCCredentials(bearer(token)))
		client := tunnelv1.NewTunnelServiceClient(conn)
		getInfoAndEcho(ctx, t, client, tb, "authenticated")
		echo := startEcho(t)
		opened, err := client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{RemoteHost: "127.0.0.1", RemotePort: echo})
		if err != nil {
			t.Fatalf("OpenLocalForward: %v", err)
		}
		if _, err := client.Close(ctx, &tunnelv1.CloseRequest{Id: opened.GetTunnel().GetId()}); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})

	t.Run("token in outgoing metadata is accepted", func(t *testing.T) {
		t.Parallel()
		ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer "+token)
		list, err := anonClient.List(ctx, &tunnelv1.ListRequest{})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list.GetHosts()) == 0 || list.GetHosts()[0].GetName() != "default" {
			t.Errorf("List hosts = %v, want the default host", list.GetHosts())
		}
	})

	t.Run("wrong token is refused without echoing it", func(t *testing.T) {
		t.Parallel()
		wrong := wrongToken(token)
		ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer "+wrong)
		_, err := anonClient.List(ctx, &tunnelv1.ListRequest{})
		st := wantCode(t, err, codes.Unauthenticated)
		if msg := st.Message(); !strings.Contains(msg, "not accepted") || strings.Contains(msg, wrong) || strings.Contains(msg, token) {
			t.Errorf("message %q: want `not accepted`, and neither token", msg)
		}
	})

	t.Run("authorization must use the Bearer scheme", func(t *testing.T) {
		t.Parallel()
		ctx := metadata.AppendToOutgoingContext(testContext(t), "authorization", "Basic "+token)
		_, err := anonClient.List(ctx, &tunnelv1.ListRequest{})
		if st := wantCode(t, err, codes.Unauthenticated); !strings.Contains(st.Message(), `"Bearer <token>"`) {
			t.Errorf("message %q does not name the expected form", st.Message())
		}
	})

	t.Run("health needs no token", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		for _, service := range []string{"", "tunnel.v1.TunnelService"} {
			if err := checkHealth(ctx, anonymous, service); err != nil {
				t.Errorf("Check(%q) without a token: %v", service, err)
			}
		}
	})
}

func TestQuickstartExampleSendsTheTokenFromTheEnvironment(t *testing.T) {
	t.Parallel()
	tb := testbedWith(t, "--token")
	addr, token := tb.vars["TUNNELD_ADDR"], tb.vars["TUNNELD_TOKEN"]
	bin := buildQuickstart(t)
	echo := startEcho(t)
	ctx := testContext(t)
	args := []string{"-addr", addr, "-target", hostPort("127.0.0.1", echo), "-command", "echo with-token"}

	stdout, stderr, err := runExample(ctx, bin, map[string]string{"TUNNELD_TOKEN": token}, args...)
	if err != nil || !strings.Contains(stdout, "with-token\nexit code 0\n") {
		t.Errorf("with TUNNELD_TOKEN: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	// A line of tunneld's own --token-file (NAME:TOKEN), after a comment.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("# for the quickstart\n\nci:"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = runExample(ctx, bin, map[string]string{"TUNNELD_TOKEN_FILE": file}, args...)
	if err != nil || !strings.Contains(stdout, "with-token\nexit code 0\n") {
		t.Errorf("with TUNNELD_TOKEN_FILE: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	stdout, stderr, err = runExample(ctx, bin, nil, args...)
	if code := exitCode(err); code != 1 || !strings.Contains(stderr, "code = Unauthenticated desc = this tunneld requires a token") {
		t.Errorf("without a token: exit %d, want 1 and Unauthenticated\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// tlsTestbed returns the mutual-TLS testbed and a TLS config that trusts its
// CA and verifies its server name, without a client certificate.
func tlsTestbed(t *testing.T) (*testbed, *tls.Config) {
	t.Helper()
	tb := testbedWith(t, "--tls")
	pem, err := os.ReadFile(tb.vars["TUNNELD_TLS_CA"])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", tb.vars["TUNNELD_TLS_CA"])
	}
	return tb, &tls.Config{RootCAs: roots, ServerName: tb.vars["TUNNELD_TLS_SERVER_NAME"], MinVersion: tls.VersionTLS12}
}

// clientCert is the client certificate testbed --tls printed.
func clientCert(t *testing.T, tb *testbed) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(tb.vars["TUNNELD_TLS_CERT"], tb.vars["TUNNELD_TLS_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	tb, base := tlsTestbed(t)
	addr := tb.vars["TUNNELD_ADDR"]

	t.Run("a client certificate signed by the client CA works", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		cfg := base.Clone()
		cfg.Certificates = []tls.Certificate{clientCert(t, tb)}
		conn := dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		client := tunnelv1.NewTunnelServiceClient(conn)
		getInfoAndEcho(ctx, t, client, tb, "over-mtls")
		if err := checkHealth(ctx, conn, ""); err != nil {
			t.Errorf("health: %v", err)
		}
	})

	t.Run("no client certificate fails", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		conn := dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(base.Clone())))
		_, err := tunnelv1.NewTunnelServiceClient(conn).List(ctx, &tunnelv1.ListRequest{})
		wantCode(t, err, codes.Unavailable)
		// The handshake fails before any call is dispatched, health included.
		wantCode(t, checkHealth(ctx, conn, ""), codes.Unavailable)
	})

	t.Run("an untrusted server certificate fails", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// The system's roots do not include the testbed's CA.
		cfg := &tls.Config{ServerName: base.ServerName, Certificates: []tls.Certificate{clientCert(t, tb)}, MinVersion: tls.VersionTLS12}
		conn := dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		_, err := tunnelv1.NewTunnelServiceClient(conn).List(ctx, &tunnelv1.ListRequest{})
		wantCode(t, err, codes.Unavailable)
	})

	t.Run("plaintext fails", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		conn := dial(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		_, err := tunnelv1.NewTunnelServiceClient(conn).List(ctx, &tunnelv1.ListRequest{})
		wantCode(t, err, codes.Unavailable)
	})
}

func TestQuickstartExampleUsesMutualTLSFromTheEnvironment(t *testing.T) {
	t.Parallel()
	tb, _ := tlsTestbed(t)
	bin := buildQuickstart(t)
	echo := startEcho(t)
	ctx := testContext(t)
	args := []string{"-addr", tb.vars["TUNNELD_ADDR"], "-target", hostPort("127.0.0.1", echo), "-command", "echo over-tls"}
	env := map[string]string{}
	for _, k := range []string{"TUNNELD_TLS_CA", "TUNNELD_TLS_SERVER_NAME", "TUNNELD_TLS_CERT", "TUNNELD_TLS_KEY"} {
		env[k] = tb.vars[k]
	}

	stdout, stderr, err := runExample(ctx, bin, env, args...)
	if err != nil || !strings.Contains(stdout, "over-tls\nexit code 0\n") || !strings.Contains(stdout, `got back 22: "hello through tunneld\n"`) {
		t.Errorf("with a client certificate: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	delete(env, "TUNNELD_TLS_CERT")
	delete(env, "TUNNELD_TLS_KEY")
	stdout, stderr, err = runExample(ctx, bin, env, args...)
	if code := exitCode(err); code != 1 || !strings.Contains(stderr, "code = Unavailable") {
		t.Errorf("without a client certificate: exit %d, want 1 and Unavailable\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// getInfoAndEcho checks that client reaches tb's tunneld (GetInfo names its
// pid) and that an Exec of `echo word` prints word and exits 0.
func getInfoAndEcho(ctx context.Context, t *testing.T, client tunnelv1.TunnelServiceClient, tb *testbed, word string) {
	t.Helper()
	info, err := client.GetInfo(ctx, &tunnelv1.GetInfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if got := strconv.FormatUint(uint64(info.GetPid()), 10); got != tb.vars["TUNNELD_PID"] {
		t.Errorf("pid = %s, want %s", got, tb.vars["TUNNELD_PID"])
	}
	stream, err := client.Exec(ctx, &tunnelv1.ExecRequest{Command: "echo " + word})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if res := collect(t, stream); string(res.stdout) != word+"\n" || res.exit.GetCode() != 0 {
		t.Errorf("Exec: stdout %q, exit %v", res.stdout, res.exit)
	}
}
