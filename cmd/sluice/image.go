package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/image"
	"github.com/sluice-gpu/sluice/containers/spec"
)

const imageUsage = `Usage:
  sluice image build [--tag REF] DIR   build the function in DIR (DIR/function.json) into a local image
  sluice image list                    list the images sluice built
  sluice image rm REF...               remove images sluice built

Images are assembled from the function's build section (a binary and the
shared libraries it needs, or a Python module with the host's python3 and its
standard library) and imported into the local Docker engine (DOCKER_HOST);
no registry is involved.
`

// runImage implements `sluice image`.
func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, imageUsage)
		return nil
	case "build":
		return imageBuild(ctx, args[1:], stdout, stderr)
	case "list", "ls":
		if len(args) > 1 {
			fmt.Fprint(stderr, "sluice image list: takes no arguments\n\n"+imageUsage)
			return errUsage
		}
		return imageList(ctx, stdout)
	case "rm", "remove":
		if len(args) < 2 {
			fmt.Fprint(stderr, "sluice image rm: name at least one image\n\n"+imageUsage)
			return errUsage
		}
		return imageRemove(ctx, args[1:], stdout)
	}
	fmt.Fprintf(stderr, "sluice image: unknown subcommand %q\n\n%s", args[0], imageUsage)
	return errUsage
}

func dockerClient() (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("connect to docker: %w", err)
	}
	return cli, nil
}

func imageBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tag := fs.String("tag", "", "image reference (default: the spec's image, else sluice-fn/NAME:latest)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sluice image build [--tag REF] DIR\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "sluice image build: name exactly one function directory")
		fs.Usage()
		return errUsage
	}
	f, err := spec.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	if f.Build == nil {
		return fmt.Errorf("%s: no \"build\" section: nothing to build", fs.Arg(0))
	}
	if *tag != "" {
		if strings.ContainsAny(*tag, " \t\n") {
			return fmt.Errorf("--tag %q: contains white space", *tag)
		}
		f.Image = *tag
	}
	cli, err := dockerClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	start := time.Now()
	res, err := image.Build(ctx, cli, f, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s (%s, %d files) in %v\n", res.Ref, shortImageID(res.ID), res.Files, time.Since(start).Round(time.Millisecond))
	return nil
}

func shortImageID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

func imageList(ctx context.Context, stdout io.Writer) error {
	cli, err := dockerClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	ims, err := image.List(ctx, cli, nil)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tIMAGE\tID\tSIZE\tCREATED")
	for _, im := range ims {
		tags := strings.Join(im.Tags, ",")
		if tags == "" {
			tags = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%s\n", im.Function, tags, shortImageID(im.ID), float64(im.Size)/1e6,
			time.Unix(im.Created, 0).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func imageRemove(ctx context.Context, refs []string, stdout io.Writer) error {
	cli, err := dockerClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	var errs []error
	for _, ref := range refs {
		if err := image.Remove(ctx, cli, ref); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "removed %s\n", ref)
	}
	return errors.Join(errs...)
}
