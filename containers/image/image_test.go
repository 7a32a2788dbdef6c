package image

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/internal/dockertest"
)

func TestImportListRemove(t *testing.T) {
	cli := dockertest.Client(t)
	ctx := context.Background()
	label := "t" + runtime.RandomSuffix(6)
	ref := "sluice-test/import:" + label
	r := NewRootfs()
	if err := r.AddELF("/fn/true", "/bin/true"); err != nil {
		t.Fatal(err)
	}
	id, err := Import(ctx, cli, r, ref, Config{Cmd: []string{"/fn/true"}, Labels: map[string]string{runtime.LabelInstance: label, runtime.LabelFunction: "imp"}})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true}) })
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("image id %q", id)
	}
	in, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if c := in.Config; c == nil || c.User != "65534:65534" || c.WorkingDir != "/fn" || len(c.Cmd) != 1 || c.Cmd[0] != "/fn/true" ||
		c.Labels[runtime.LabelManaged] != "1" || c.Labels[runtime.LabelFunction] != "imp" {
		t.Errorf("image config %+v", in.Config)
	}
	ims, err := List(ctx, cli, map[string]string{runtime.LabelInstance: label})
	if err != nil || len(ims) != 1 || ims[0].Function != "imp" {
		t.Fatalf("list: %+v %v", ims, err)
	}

	// An image without Sluice's label is never removed.
	foreign := "sluice-test/foreign:" + label
	var tarball bytes.Buffer
	if err := NewRootfs().WriteTar(&tarball); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &tarball, SourceName: "-"}, foreign, client.ImageImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sink bytes.Buffer
	sink.ReadFrom(rc)
	rc.Close()
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), foreign, client.ImageRemoveOptions{Force: true}) })
	if err := Remove(ctx, cli, foreign); err == nil || !strings.Contains(err.Error(), "not built by sluice") {
		t.Errorf("remove of a foreign image: got %v, want a refusal", err)
	}
	if err := Remove(ctx, cli, ref); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if ims, _ := List(ctx, cli, map[string]string{runtime.LabelInstance: label}); len(ims) != 0 {
		t.Errorf("still listed after remove: %+v", ims)
	}
	if err := Remove(ctx, cli, ref); err != nil {
		t.Errorf("second remove: %v, want nil", err)
	}
}
