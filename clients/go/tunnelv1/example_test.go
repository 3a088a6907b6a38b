package tunnelv1_test

// These examples are compiled by `go test` but not run (they have no Output
// comment): they need a tunneld. The e2e suite (../e2e) runs the same calls,
// and examples/quickstart, against a real one.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/status"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// Dial tunneld and open a local forward to a database behind the SSH host,
// like `ssh -L 0:db.internal:5432 bastion`.
func ExampleTunnelServiceClient_OpenLocalForward() {
	conn, err := grpc.NewClient("127.0.0.1:4522", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := tunnelv1.NewTunnelServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{
		Host:       "bastion",
		RemoteHost: "db.internal",
		RemotePort: 5432,
		// LocalPort 0: tunneld picks a free port and returns it.
	})
	if status.Code(err) == codes.AlreadyExists {
		log.Fatal("the local port is taken: ", status.Convert(err).Message())
	} else if err != nil {
		log.Fatal(err)
	}
	tun := resp.GetTunnel()
	fmt.Printf("%s: connect to %s:%d\n", tun.GetId(), tun.GetLocal().GetHost(), tun.GetLocal().GetPort())

	// ... use it, then:
	if _, err := client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()}); err != nil {
		log.Fatal(err)
	}
}

// Run a command and stream its output as it arrives, like `ssh host cmd`.
func ExampleTunnelServiceClient_Exec() {
	conn, err := grpc.NewClient("127.0.0.1:4522", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := tunnelv1.NewTunnelServiceClient(conn)

	// Cancelling ctx ends the call and closes the command's channel.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := client.Exec(ctx, &tunnelv1.ExecRequest{
		Command: "journalctl -u app -n 50",
		Env:     map[string]string{"SYSTEMD_COLORS": "0"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		switch ev := msg.GetEvent().(type) {
		case *tunnelv1.ExecResponse_Stdout:
			os.Stdout.Write(ev.Stdout)
		case *tunnelv1.ExecResponse_Stderr:
			os.Stderr.Write(ev.Stderr)
		case *tunnelv1.ExecResponse_Exit:
			fmt.Println("exit code", ev.Exit.GetCode())
		}
	}
}

// bearerToken sends "authorization: Bearer TOKEN" with every call, as a
// tunneld started with --token-file requires.
type bearerToken struct {
	token string
	// requireTLS: grpc-go refuses to send credentials that require transport
	// security over a connection without it. False only with local
	// credentials, which keep the connection on this machine.
	requireTLS bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.requireTLS }

// Reach a tunneld on another machine that serves mutual TLS (--tls-cert,
// --tls-key, --tls-client-ca) and requires a token (--token-file).
func Example_tokenOverMutualTLS() {
	caPEM, err := os.ReadFile(os.Getenv("TUNNELD_TLS_CA")) // the CA that signed tunneld's certificate
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatal("no certificate in TUNNELD_TLS_CA")
	}
	clientCert, err := tls.LoadX509KeyPair(os.Getenv("TUNNELD_TLS_CERT"), os.Getenv("TUNNELD_TLS_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("tunneld.example.com:4522",
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs:      roots,
			Certificates: []tls.Certificate{clientCert},
			MinVersion:   tls.VersionTLS12,
		})),
		grpc.WithPerRPCCredentials(bearerToken{token: os.Getenv("TUNNELD_TOKEN"), requireTLS: true}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := tunnelv1.NewTunnelServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := client.List(ctx, &tunnelv1.ListRequest{})
	if status.Code(err) == codes.Unauthenticated {
		// No token, or one tunneld does not know: the message says which.
		log.Fatal(status.Convert(err).Message())
	} else if err != nil {
		log.Fatal(err) // codes.Unavailable if, among others, the TLS handshake failed
	}
	fmt.Println(len(list.GetTunnels()), "tunnels open")
}

// Send a token to a tunneld on loopback that serves plaintext.
func Example_tokenOnLoopback() {
	conn, err := grpc.NewClient("127.0.0.1:4522",
		// Plaintext like insecure.NewCredentials, but the connection is
		// refused unless its far end is on this machine: the token never
		// crosses a network in the clear.
		grpc.WithTransportCredentials(local.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerToken{token: os.Getenv("TUNNELD_TOKEN")}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := tunnelv1.NewTunnelServiceClient(conn).GetInfo(ctx, &tunnelv1.GetInfoRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tunneld", info.GetVersion())
}
