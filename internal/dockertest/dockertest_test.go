package dockertest

import (
	"context"
	"testing"

	"github.com/moby/moby/client"
)

// TestClient pings the engine through the client (the test skips, or fails
// in CI, without one).
func TestClient(t *testing.T) {
	cli := Client(t)
	if _, err := cli.Ping(context.Background(), client.PingOptions{}); err != nil {
		t.Fatalf("ping: %v", err)
	}
}
