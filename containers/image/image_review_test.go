package image

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/testenv"
)

// Import must not move a tag away from an image Sluice did not build (the
// foreign image would be left untagged, as if deleted).
func TestImportRefusesForeignTag(t *testing.T) {
	testenv.RequireDocker(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	ref := "sluice-test/review-foreign:" + runtime.RandomSuffix(6)

	// A foreign image: imported directly, without Sluice's label.
	var tarball bytes.Buffer
	r := NewRootfs()
	r.AddData("/hello", []byte("hi"), 0o644)
	if err := r.WriteTar(&tarball); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &tarball, SourceName: "-"}, ref, client.ImageImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp)
	resp.Close()
	before, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), before.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})

	_, err = Import(ctx, cli, NewRootfs(), ref, Config{})
	if err == nil || !strings.Contains(err.Error(), "not built by sluice") {
		t.Fatalf("Import over a foreign tag: %v, want a refusal", err)
	}
	after, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID {
		_, _ = cli.ImageRemove(context.Background(), after.ID, client.ImageRemoveOptions{Force: true})
		t.Fatalf("tag %s moved from %s to %s", ref, before.ID, after.ID)
	}

	// Re-importing over Sluice's own image still works.
	own := "sluice-test/review-own:" + runtime.RandomSuffix(6)
	for range 2 {
		id, err := Import(ctx, cli, NewRootfs(), own, Config{})
		if err != nil {
			t.Fatalf("Import over a Sluice image: %v", err)
		}
		t.Cleanup(func() {
			_, _ = cli.ImageRemove(context.Background(), id, client.ImageRemoveOptions{Force: true})
		})
	}
}
