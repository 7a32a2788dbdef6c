package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/runtime"
	"github.com/sluice-gpu/sluice/containers/spec"
)

// Config is the image configuration applied at import.
type Config struct {
	// Cmd is the default command (JSON form).
	Cmd []string
	// User is the default user. Default "65534:65534" (nobody).
	User string
	// Env entries (KEY=VALUE). Default PATH=/usr/local/bin:/usr/bin:/bin.
	Env []string
	// WorkingDir. Default spec.FnDir.
	WorkingDir string
	// Labels; LabelManaged is always added.
	Labels map[string]string
}

func (c Config) changes() ([]string, error) {
	var ch []string
	if len(c.Cmd) > 0 {
		b, err := json.Marshal(c.Cmd)
		if err != nil {
			return nil, err
		}
		ch = append(ch, "CMD "+string(b))
	}
	user := c.User
	if user == "" {
		user = "65534:65534"
	}
	ch = append(ch, "USER "+user)
	env := c.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	for _, e := range env {
		if strings.ContainsAny(e, "\n\"") || !strings.Contains(e, "=") {
			return nil, fmt.Errorf("image env %q: want KEY=VALUE without quotes or newlines", e)
		}
		k, v, _ := strings.Cut(e, "=")
		ch = append(ch, fmt.Sprintf("ENV %s=%q", k, v))
	}
	wd := c.WorkingDir
	if wd == "" {
		wd = spec.FnDir
	}
	ch = append(ch, "WORKDIR "+wd)
	labels := map[string]string{runtime.LabelManaged: "1"}
	for k, v := range c.Labels {
		labels[k] = v
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if strings.ContainsAny(k+labels[k], "\n\"= ") {
			return nil, fmt.Errorf("image label %q=%q: no quotes, '=', spaces or newlines", k, labels[k])
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch = append(ch, fmt.Sprintf("LABEL %s=%q", k, labels[k]))
	}
	return ch, nil
}

// Import streams rootfs into Docker as image ref with cfg, returning the
// image ID.
func Import(ctx context.Context, cli *client.Client, rootfs *Rootfs, ref string, cfg Config) (string, error) {
	changes, err := cfg.changes()
	if err != nil {
		return "", err
	}
	// Importing moves ref's tag: never take it from an image Sluice did not
	// build.
	if in, err := cli.ImageInspect(ctx, ref); err == nil {
		if in.Config == nil || in.Config.Labels[runtime.LabelManaged] != "1" {
			return "", fmt.Errorf("import image %s: the tag names an image not built by sluice (no %s label)", ref, runtime.LabelManaged)
		}
	} else if !isNotFound(err) {
		return "", fmt.Errorf("import image %s: inspect existing tag: %w", ref, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(rootfs.WriteTar(pw)) }()
	resp, err := cli.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: changes, Message: "sluice image build"})
	if err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("import image %s: %w", ref, err)
	}
	defer resp.Close()
	dec := json.NewDecoder(resp)
	id := ""
	for {
		var m struct {
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("import image %s: read progress: %w", ref, err)
		}
		if m.Error != "" {
			return "", fmt.Errorf("import image %s: %s", ref, m.Error)
		}
		if strings.HasPrefix(m.Status, "sha256:") {
			id = m.Status
		}
	}
	if id == "" {
		return "", fmt.Errorf("import image %s: the engine reported no image ID", ref)
	}
	return id, nil
}

// Result describes a built image.
type Result struct {
	Ref, ID string
	Files   int
}

// Build assembles f's rootfs and imports it as f.Image, labelled with the
// function's name plus extra labels (e.g. a test's instance label).
func Build(ctx context.Context, cli *client.Client, f *spec.Function, extra map[string]string) (Result, error) {
	r := NewRootfs()
	if err := r.Function(f); err != nil {
		return Result{}, fmt.Errorf("assemble rootfs of %s: %w", f.Name, err)
	}
	labels := map[string]string{runtime.LabelFunction: f.Name}
	for k, v := range extra {
		labels[k] = v
	}
	id, err := Import(ctx, cli, r, f.Image, Config{Cmd: f.ImageCommand(), User: f.User, Labels: labels})
	if err != nil {
		return Result{}, err
	}
	return Result{Ref: f.Image, ID: id, Files: r.Len()}, nil
}

// Summary is one Sluice-built image.
type Summary struct {
	ID       string
	Tags     []string
	Function string
	Size     int64
	Created  int64
}

// List returns the images carrying LabelManaged (and every label in match).
func List(ctx context.Context, cli *client.Client, match map[string]string) ([]Summary, error) {
	f := client.Filters{}.Add("label", runtime.LabelManaged+"=1")
	for k, v := range match {
		f = f.Add("label", k+"="+v)
	}
	res, err := cli.ImageList(ctx, client.ImageListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Summary, 0, len(res.Items))
	for _, im := range res.Items {
		out = append(out, Summary{ID: im.ID, Tags: im.RepoTags, Function: im.Labels[runtime.LabelFunction], Size: im.Size, Created: im.Created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Function < out[j].Function })
	return out, nil
}

// Remove deletes a Sluice-built image by reference or ID; it refuses images
// without LabelManaged. A missing image is not an error.
func Remove(ctx context.Context, cli *client.Client, ref string) error {
	res, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if res.Config == nil || res.Config.Labels[runtime.LabelManaged] != "1" {
		return fmt.Errorf("remove image %s: not built by sluice (no %s label)", ref, runtime.LabelManaged)
	}
	if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}
