package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

// pollInterval is how often poll looks again.
const pollInterval = 20 * time.Millisecond

// startEcho starts a TCP echo server on 127.0.0.1:0 that copies every
// connection back to itself and half-closes it when the client has; it is
// stopped when the test ends. Returns its port.
func startEcho(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("echo server: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				if _, err := io.Copy(c, c); err == nil {
					_ = c.(*net.TCPConn).CloseWrite()
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// randomBytes returns n random bytes.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// randomToken returns a short random hex string for unique names.
func randomToken(t *testing.T) string {
	return fmt.Sprintf("%x", randomBytes(t, 6))
}

// roundTrip connects to 127.0.0.1:port, writes data while reading, half-closes
// and reads until the peer closes. It fails the test unless exactly data came
// back, and returns the connection's local address (the peer tunneld sees).
func roundTrip(ctx context.Context, t *testing.T, port uint32, data []byte) string {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("connecting to the tunnel: %v", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading back through the tunnel after %d of %d bytes: %v", len(got), len(data), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing through the tunnel: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("round trip through the tunnel: sent %d bytes, got back %d bytes that differ", len(data), len(got))
	}
	return conn.LocalAddr().String()
}

// poll calls check every pollInterval until it reports done, fails with its
// error, or ctx ends; then the test fails naming what it waited for.
func poll(ctx context.Context, t *testing.T, what string, check func() (done bool, err error)) {
	t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		done, err := check()
		if done {
			return
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, errTimeout, last)
		case <-tick.C:
		}
	}
}

// listTunnel returns the open tunnel with this id, or nil.
func listTunnel(ctx context.Context, t *testing.T, id string) *tunnelv1.Tunnel {
	t.Helper()
	resp, err := bed.client.List(ctx, &tunnelv1.ListRequest{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, tun := range resp.GetTunnels() {
		if tun.GetId() == id {
			return tun
		}
	}
	return nil
}

// waitGone polls List until the tunnel with this id is no longer listed.
func waitGone(ctx context.Context, t *testing.T, id string) {
	t.Helper()
	poll(ctx, t, "tunnel "+id+" to leave List", func() (bool, error) {
		return listTunnel(ctx, t, id) == nil, nil
	})
}

// waitPortFree polls until 127.0.0.1:port can be bound again.
func waitPortFree(ctx context.Context, t *testing.T, port uint32) {
	t.Helper()
	poll(ctx, t, fmt.Sprintf("port %d to be free", port), func() (bool, error) {
		ln, err := net.Listen("tcp", hostPort("127.0.0.1", port))
		if err != nil {
			return false, err
		}
		ln.Close()
		return true, nil
	})
}

// waitRefused polls until connecting to 127.0.0.1:port is refused.
func waitRefused(ctx context.Context, t *testing.T, port uint32) {
	t.Helper()
	poll(ctx, t, fmt.Sprintf("connections to port %d to be refused", port), func() (bool, error) {
		c, err := net.DialTimeout("tcp", hostPort("127.0.0.1", port), time.Second)
		if err != nil {
			return true, nil
		}
		c.Close()
		return false, errors.New("still accepted")
	})
}

// closeOnCleanup closes a tunnel when the test ends, unless it is gone already.
func closeOnCleanup(t *testing.T, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := bed.client.Close(ctx, &tunnelv1.CloseRequest{Id: id})
		if err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("closing %s on cleanup: %v", id, err)
		}
	})
}

// wantCode fails the test unless err is a status with this code.
func wantCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("want status %v, got %v", code, err)
	}
	return st
}

func hostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}
