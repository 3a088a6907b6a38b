package e2e

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// recvAttached receives the next OpenAttached message, failing on an error.
func recvAttached(t *testing.T, stream tunnelv1.TunnelService_OpenAttachedClient) *tunnelv1.OpenAttachedResponse {
	t.Helper()
	msg, err := stream.Recv()
	if err != nil {
		t.Fatalf("OpenAttached stream: %v", err)
	}
	return msg
}

// expectConnection receives the opened and closed events of one connection
// and checks its peer and byte counts.
func expectConnection(t *testing.T, stream tunnelv1.TunnelService_OpenAttachedClient, id uint64, peer string, n uint64) {
	t.Helper()
	opened := recvAttached(t, stream).GetConnectionOpened()
	if opened.GetConnectionId() != id || (peer != "" && opened.GetPeer() != peer) {
		t.Fatalf("connection_opened = %v, want connection %d from %q", opened, id, peer)
	}
	closed := recvAttached(t, stream).GetConnectionClosed()
	if closed.GetConnectionId() != id || closed.GetPeer() != opened.GetPeer() ||
		closed.GetBytesToTarget() != n || closed.GetBytesFromTarget() != n ||
		closed.GetError() != "" || !closed.GetDuration().IsValid() {
		t.Fatalf("connection_closed = %v, want connection %d with %d bytes each way", closed, id, n)
	}
}

func TestOpenAttachedClosesWhenTheCallIsCancelled(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	echo := startEcho(t)
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := bed.client.OpenAttached(callCtx, &tunnelv1.OpenAttachedRequest{
		Forward: &tunnelv1.OpenAttachedRequest_Local{Local: &tunnelv1.OpenLocalForwardRequest{
			RemoteHost: "127.0.0.1",
			RemotePort: echo,
		}},
	})
	if err != nil {
		t.Fatalf("OpenAttached: %v", err)
	}
	first := recvAttached(t, stream)
	tun := first.GetOpened()
	if tun == nil {
		t.Fatalf("first message = %v, want opened", first)
	}
	closeOnCleanup(t, tun.GetId())
	if !tun.GetAttached() || tun.GetKind() != tunnelv1.TunnelKind_TUNNEL_KIND_LOCAL ||
		tun.GetState() != tunnelv1.TunnelState_TUNNEL_STATE_OPEN || tun.GetLocal().GetPort() == 0 {
		t.Fatalf("opened = %v", tun)
	}
	port := tun.GetLocal().GetPort()

	data := randomBytes(t, 128<<10)
	peer := roundTrip(ctx, t, port, data)
	expectConnection(t, stream, 1, peer, uint64(len(data)))
	peer = roundTrip(ctx, t, port, []byte("again"))
	expectConnection(t, stream, 2, peer, 5)

	if listed := listTunnel(ctx, t, tun.GetId()); listed == nil || !listed.GetAttached() {
		t.Fatalf("List shows %v for the attached tunnel %s", listed, tun.GetId())
	}

	cancel()
	_, err = stream.Recv()
	wantCode(t, err, codes.Canceled)
	waitGone(ctx, t, tun.GetId())
	waitPortFree(ctx, t, port)
}

func TestOpenAttachedEndsWithClosedWhenClosed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	echo := startEcho(t)
	stream, err := bed.client.OpenAttached(ctx, &tunnelv1.OpenAttachedRequest{
		Forward: &tunnelv1.OpenAttachedRequest_Remote{Remote: &tunnelv1.OpenRemoteForwardRequest{
			LocalHost: "127.0.0.1",
			LocalPort: echo,
		}},
	})
	if err != nil {
		t.Fatalf("OpenAttached: %v", err)
	}
	tun := recvAttached(t, stream).GetOpened()
	if tun.GetKind() != tunnelv1.TunnelKind_TUNNEL_KIND_REMOTE || !tun.GetAttached() || tun.GetRemote().GetPort() == 0 {
		t.Fatalf("opened = %v, want an attached remote forward", tun)
	}
	closeOnCleanup(t, tun.GetId())

	data := randomBytes(t, 64<<10)
	roundTrip(ctx, t, tun.GetRemote().GetPort(), data)
	// The peer of a remote forward is the originator sshd reports.
	expectConnection(t, stream, 1, "", uint64(len(data)))

	if _, err := bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()}); err != nil {
		t.Fatalf("Close: %v", err)
	}
	last := recvAttached(t, stream)
	if st := last.GetStateChanged(); st.GetId() != tun.GetId() || st.GetState() != tunnelv1.TunnelState_TUNNEL_STATE_CLOSED {
		t.Fatalf("message after Close = %v, want state_changed CLOSED", last)
	}
	if msg, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CLOSED: message %v, error %v; want the call to end with OK", msg, err)
	}
	waitRefused(ctx, t, tun.GetRemote().GetPort())
}
