package e2e

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// Watch sends every host and open tunnel as they are, then synced.
func TestWatchStartsWithTheHostsThenSynced(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	stream, err := bed.client.Watch(ctx, &tunnelv1.WatchRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	if first.GetHost().GetName() != "default" || !first.GetTime().IsValid() {
		t.Fatalf("first message = %v, want the default host with a time", first)
	}
	// Other tests share the daemon: their tunnels may come before synced,
	// nothing else may.
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("before synced: %v", err)
		}
		switch msg.GetEvent().(type) {
		case *tunnelv1.WatchResponse_Synced:
			return
		case *tunnelv1.WatchResponse_Host, *tunnelv1.WatchResponse_Tunnel:
		default:
			t.Fatalf("before synced: %v", msg)
		}
	}
}

func TestWatchUnknownTunnelIsNotFound(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	stream, err := bed.client.Watch(ctx, &tunnelv1.WatchRequest{TunnelId: "t-999999"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Watch(t-999999) = %v, want NOT_FOUND", err)
	}
}
