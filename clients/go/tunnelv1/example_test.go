package tunnelv1_test

// These examples are compiled by `go test` but not run (they have no Output
// comment): they need a tunneld. The e2e suite (../e2e) runs the same calls,
// and examples/quickstart, against a real one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
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
