package e2e

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	unknownID := "t-unknown-" + randomToken(t)

	// A port held by this test: tunneld cannot bind it.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	takenPort := uint32(taken.Addr().(*net.TCPAddr).Port)

	cases := []struct {
		name string
		call func(ctx context.Context) error
		code codes.Code
		// The message must name what is wrong.
		mentions string
	}{
		{"close an unknown id", func(ctx context.Context) error {
			_, err := bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: unknownID})
			return err
		}, codes.NotFound, unknownID},
		{"local forward to remote_port 0", func(ctx context.Context) error {
			_, err := bed.client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{RemotePort: 0})
			return err
		}, codes.InvalidArgument, "remote_port"},
		{"local forward to remote_port 70000", func(ctx context.Context) error {
			_, err := bed.client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{RemotePort: 70000})
			return err
		}, codes.InvalidArgument, "70000"},
		{"remote forward to local_port 0", func(ctx context.Context) error {
			_, err := bed.client.OpenRemoteForward(ctx, &tunnelv1.OpenRemoteForwardRequest{LocalPort: 0})
			return err
		}, codes.InvalidArgument, "local_port"},
		{"local forward on a taken port", func(ctx context.Context) error {
			_, err := bed.client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{LocalPort: takenPort, RemotePort: 22})
			return err
		}, codes.AlreadyExists, strconv.Itoa(int(takenPort))},
		{"attached local forward on a taken port", func(ctx context.Context) error {
			stream, err := bed.client.OpenAttached(ctx, &tunnelv1.OpenAttachedRequest{
				Forward: &tunnelv1.OpenAttachedRequest_Local{Local: &tunnelv1.OpenLocalForwardRequest{LocalPort: takenPort, RemotePort: 22}},
			})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}, codes.AlreadyExists, strconv.Itoa(int(takenPort))},
		{"exec an empty command", func(ctx context.Context) error {
			return execErr(ctx, &tunnelv1.ExecRequest{Command: "  "})
		}, codes.InvalidArgument, "command"},
		{"exec with a bad env name", func(ctx context.Context) error {
			return execErr(ctx, &tunnelv1.ExecRequest{Command: "true", Env: map[string]string{"BAD-NAME": "x"}})
		}, codes.InvalidArgument, "BAD-NAME"},
		{"exec on an unknown host", func(ctx context.Context) error {
			return execErr(ctx, &tunnelv1.ExecRequest{Host: "no-such-host", Command: "true"})
		}, codes.NotFound, "no-such-host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call(testContext(t))
			st := wantCode(t, err, tc.code)
			if !strings.Contains(st.Message(), tc.mentions) {
				t.Errorf("message %q does not mention %q", st.Message(), tc.mentions)
			}
		})
	}
}

// execErr runs an Exec call to its end and returns its final error.
func execErr(ctx context.Context, req *tunnelv1.ExecRequest) error {
	stream, err := bed.client.Exec(ctx, req)
	if err != nil {
		return err
	}
	return drain(stream)
}
