// Package demo runs `canton demo`: a whole mesh on loopback in one process.
// Today it starts three anchors replicating the root scope, delegates the
// bookinfo scope to them and applies the sample's Istio YAML; the sample
// services and their proxies join as the data plane lands.
//
// Only internal/cli imports this package.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"canton.dev/canton/examples/bookinfo"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

// Options configures the demo.
type Options struct {
	Data   string       // data directory; "" = a temporary one, removed at exit
	Out    io.Writer    // where the demo prints what it runs
	Logger *slog.Logger // anchors' logs; default: discard
	// Ready, when set, is called once the mesh is up (tests use it).
	Ready func(c *meshtest.Cluster)
}

const scopeName = "bookinfo"

// Run starts the demo mesh and keeps it running until ctx ends.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	dir := opts.Data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "canton-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	start := time.Now()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: dir, TickInterval: 100 * time.Millisecond, RequestTimeout: 5 * time.Second, Logger: opts.Logger})
	if err != nil {
		return err
	}
	defer c.Close()
	client, err := c.Client(0)
	if err != nil {
		return err
	}
	defer client.Close()

	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(wait, c.Mesh()); err != nil {
		return err
	}
	domain := scopeName + "." + c.Mesh()
	if _, err := client.Get(wait, "Delegation", c.Mesh(), domain, ""); api.Code(err) != 0 {
		anchors := make([]string, c.Len())
		for i := range anchors {
			anchors[i] = c.Name(i)
		}
		if _, err := client.CreateScope(wait, domain, anchors); err != nil {
			return fmt.Errorf("demo: create scope %s: %w", domain, err)
		}
	}
	if err := c.WaitScope(wait, domain); err != nil {
		return err
	}
	objs, err := manifests(c.Mesh(), domain)
	if err != nil {
		return err
	}
	res, err := applyRetry(wait, client, objs)
	if err != nil {
		return fmt.Errorf("demo: apply the bookinfo sample: %w", err)
	}
	if opts.Ready != nil {
		opts.Ready(c)
	}
	printBanner(opts.Out, c, dir, domain, len(res.Objects), time.Since(start))
	<-ctx.Done()
	fmt.Fprintln(opts.Out, "\nstopping the mesh")
	return nil
}

// manifests parses the sample's YAML files in name order.
func manifests(mesh, defaultNS string) ([]resource.Object, error) {
	names, err := fs.Glob(bookinfo.Manifests, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []resource.Object
	for _, n := range names {
		b, err := fs.ReadFile(bookinfo.Manifests, n)
		if err != nil {
			return nil, err
		}
		objs, err := resource.Parse("examples/bookinfo/"+n, b, mesh, defaultNS)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// applyRetry applies objs, retrying while the new scope's replicas are still
// electing their first leader.
func applyRetry(ctx context.Context, c *api.Client, objs []resource.Object) (api.ApplyResult, error) {
	for {
		res, err := c.Apply(ctx, objs, false, nil)
		if err == nil || !retryable(err) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	code := api.Code(err)
	return code == 14 /* Unavailable */ || code == 4 /* DeadlineExceeded */
}

func printBanner(w io.Writer, c *meshtest.Cluster, dir, domain string, applied int, took time.Duration) {
	fmt.Fprintf(w, "Canton demo: mesh %s is up (%s)\n\n", c.Mesh(), took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ANCHOR\tADDRESS\tDATA\tSCOPES")
	for i := range c.Len() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s, %s\n", c.Name(i), c.Addr(i), c.DataDir(i), c.Mesh(), domain)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nScope %s was delegated to a1,a2,a3 and holds the bookinfo sample (%d resources).\n", domain, applied)
	fmt.Fprintf(w, "Use the CLI from another terminal:\n\n")
	fmt.Fprintf(w, "  export CANTON_SERVER=%s CANTON_CREDENTIALS=%s\n", c.Addr(0), c.AdminCredentials())
	fmt.Fprintf(w, "  go run ./cmd/canton status\n")
	fmt.Fprintf(w, "  go run ./cmd/canton get virtualservices -n %s -o yaml\n", scopeName)
	fmt.Fprintf(w, "  go run ./cmd/canton apply -f examples/bookinfo/virtual-service-all-v1.yaml\n")
	fmt.Fprintf(w, "  go run ./cmd/canton lineage --scope %s --verify\n\n", scopeName)
	fmt.Fprintf(w, "Data: %s. Press Ctrl-C to stop.\n", dir)
}
