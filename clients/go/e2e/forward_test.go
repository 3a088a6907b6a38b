package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

func TestLocalForwardCarriesBytesIntact(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	echo := startEcho(t)
	resp, err := bed.client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{
		RemoteHost: "127.0.0.1",
		RemotePort: echo,
	})
	if err != nil {
		t.Fatalf("OpenLocalForward: %v", err)
	}
	tun := resp.GetTunnel()
	closeOnCleanup(t, tun.GetId())
	if tun.GetKind() != tunnelv1.TunnelKind_TUNNEL_KIND_LOCAL || tun.GetState() != tunnelv1.TunnelState_TUNNEL_STATE_OPEN ||
		tun.GetLocal().GetPort() == 0 || tun.GetRemote().GetPort() != echo || tun.GetAttached() {
		t.Fatalf("opened tunnel = %v", tun)
	}

	data := randomBytes(t, 384<<10)
	roundTrip(ctx, t, tun.GetLocal().GetPort(), data)

	// The counters catch up once tunneld has seen the connection end.
	n := uint64(len(data))
	poll(ctx, t, "the counters to show the connection", func() (bool, error) {
		c := listTunnel(ctx, t, tun.GetId()).GetCounters()
		done := c.GetTotalConnections() == 1 && c.GetActiveConnections() == 0 &&
			c.GetBytesToTarget() == n && c.GetBytesFromTarget() == n
		return done, fmt.Errorf("counters %v", c)
	})

	closed, err := bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()})
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c := closed.GetTunnel(); c.GetState() != tunnelv1.TunnelState_TUNNEL_STATE_CLOSED || c.GetCounters().GetBytesToTarget() != n {
		t.Errorf("closed tunnel = %v", c)
	}
	waitPortFree(ctx, t, tun.GetLocal().GetPort())
}

func TestRemoteForwardReachesTheLocalTarget(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	echo := startEcho(t)
	resp, err := bed.client.OpenRemoteForward(ctx, &tunnelv1.OpenRemoteForwardRequest{
		RemotePort: 0, // sshd picks
		LocalHost:  "127.0.0.1",
		LocalPort:  echo,
	})
	if err != nil {
		t.Fatalf("OpenRemoteForward: %v", err)
	}
	tun := resp.GetTunnel()
	closeOnCleanup(t, tun.GetId())
	remotePort := tun.GetRemote().GetPort()
	if tun.GetKind() != tunnelv1.TunnelKind_TUNNEL_KIND_REMOTE || remotePort == 0 || tun.GetLocal().GetPort() != echo {
		t.Fatalf("opened tunnel = %v", tun)
	}

	// sshd runs on loopback, so its listening port is reachable here.
	data := randomBytes(t, 256<<10)
	roundTrip(ctx, t, remotePort, data)
	roundTrip(ctx, t, remotePort, []byte("a second connection\n"))

	if _, err := bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()}); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitRefused(ctx, t, remotePort)
}

func TestListShowsTunnelsAndHosts(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	echo := startEcho(t)
	before := time.Now()
	resp, err := bed.client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{
		BindAddress: "127.0.0.1",
		RemoteHost:  "127.0.0.1",
		RemotePort:  echo,
	})
	if err != nil {
		t.Fatalf("OpenLocalForward: %v", err)
	}
	id := resp.GetTunnel().GetId()
	closeOnCleanup(t, id)

	list, err := bed.client.List(ctx, &tunnelv1.ListRequest{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var tun *tunnelv1.Tunnel
	for _, x := range list.GetTunnels() {
		if x.GetId() == id {
			tun = x
		}
	}
	if tun == nil {
		t.Fatalf("List does not show %s: %v", id, list)
	}
	if tun.GetHost() != "default" || tun.GetKind() != tunnelv1.TunnelKind_TUNNEL_KIND_LOCAL ||
		tun.GetState() != tunnelv1.TunnelState_TUNNEL_STATE_OPEN || tun.GetAttached() ||
		tun.GetLocal().GetHost() != "127.0.0.1" || tun.GetLocal().GetPort() != resp.GetTunnel().GetLocal().GetPort() ||
		tun.GetRemote().GetHost() != "127.0.0.1" || tun.GetRemote().GetPort() != echo {
		t.Errorf("listed tunnel = %v", tun)
	}
	if created := tun.GetCreatedAt().AsTime(); created.Before(before.Add(-time.Second)) || created.After(time.Now().Add(time.Second)) {
		t.Errorf("created_at = %v, want between %v and now", created, before)
	}

	var host *tunnelv1.SshHost
	for _, h := range list.GetHosts() {
		if h.GetName() == "default" {
			host = h
		}
	}
	if host == nil {
		t.Fatalf("List shows no host named default: %v", list.GetHosts())
	}
	if !strings.HasSuffix(host.GetAddress(), ":"+bed.vars["SSHD_PORT"]) ||
		host.GetState() != tunnelv1.SshConnectionState_SSH_CONNECTION_STATE_CONNECTED ||
		host.GetTunnels() < 1 || !host.GetConnectedAt().IsValid() {
		t.Errorf("default host = %v (sshd port %s)", host, bed.vars["SSHD_PORT"])
	}
}

func TestCloseRemovesTheTunnel(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	resp, err := bed.client.OpenLocalForward(ctx, &tunnelv1.OpenLocalForwardRequest{RemotePort: startEcho(t)})
	if err != nil {
		t.Fatalf("OpenLocalForward: %v", err)
	}
	tun := resp.GetTunnel()
	closeOnCleanup(t, tun.GetId())

	closed, err := bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()})
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c := closed.GetTunnel(); c.GetId() != tun.GetId() || c.GetState() != tunnelv1.TunnelState_TUNNEL_STATE_CLOSED {
		t.Errorf("Close returned %v", c)
	}
	if listTunnel(ctx, t, tun.GetId()) != nil {
		t.Errorf("List still shows %s after Close", tun.GetId())
	}
	waitPortFree(ctx, t, tun.GetLocal().GetPort())
	_, err = bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: tun.GetId()})
	wantCode(t, err, codes.NotFound)
}
