package dockertest

import (
	"testing"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/internal/testenv"
)

// Client returns a client of the Docker engine that DOCKER_HOST (or the
// default socket) names, closed at the end of the test. It skips the test
// (fails it in CI) when no engine answers.
func Client(t testing.TB) *client.Client {
	t.Helper()
	testenv.RequireDocker(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
