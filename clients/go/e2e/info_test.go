package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tunneld/tunneld/clients/go/tunnelv1"
)

func TestGetInfo(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	info, err := bed.client.GetInfo(ctx, &tunnelv1.GetInfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(info.GetVersion()) {
		t.Errorf("version = %q, want a semantic version", info.GetVersion())
	}
	if got := strconv.FormatUint(uint64(info.GetPid()), 10); got != bed.vars["TUNNELD_PID"] {
		t.Errorf("pid = %s, want the testbed's TUNNELD_PID %s", got, bed.vars["TUNNELD_PID"])
	}
	started := info.GetStartedAt()
	if !started.IsValid() || started.AsTime().After(time.Now()) || time.Since(started.AsTime()) > time.Hour {
		t.Errorf("started_at = %v, want a moment of this test run", started)
	}
}

func TestHealthCheckServing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	health := healthpb.NewHealthClient(bed.conn)
	// The server as a whole, and the tunnel service by its full name.
	for _, service := range []string{"", "tunnel.v1.TunnelService"} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", service, resp.GetStatus())
		}
	}
}
