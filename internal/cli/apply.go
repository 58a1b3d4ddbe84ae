package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
)

func applyCmd(e *env) *cobra.Command {
	var (
		files  []string
		ns     string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-n NAMESPACE] [--dry-run]",
		Short: "Apply Istio and Canton resources (validated whole before anything is committed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("apply: -f FILE|DIR|- is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			objs, err := readManifests(files, e.stdin, c.Mesh(), namespace(ns, c.Mesh()))
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				return fmt.Errorf("apply: no resources in %s", strings.Join(files, ", "))
			}
			if err := applyObjects(cmd.Context(), c, objs, dryRun, e.stdout); err != nil {
				return err
			}
			if dryRun {
				return printProxyDiffs(cmd.Context(), e, c, objs)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace for resources that name none (relative to the mesh or absolute; default \"default\")")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate against the current state and print what would change; commit nothing")
	return cmd
}

// readManifests parses every input; the first error rejects them all.
func readManifests(files []string, stdin io.Reader, mesh, defaultNS string) ([]resource.Object, error) {
	var objs []resource.Object
	for _, f := range files {
		paths := []string{f}
		if f != "-" {
			st, err := os.Stat(f)
			if err != nil {
				return nil, err
			}
			if st.IsDir() {
				paths = nil
				entries, err := os.ReadDir(f)
				if err != nil {
					return nil, err
				}
				for _, en := range entries {
					switch strings.ToLower(filepath.Ext(en.Name())) {
					case ".yaml", ".yml", ".json":
						if !en.IsDir() {
							paths = append(paths, filepath.Join(f, en.Name()))
						}
					}
				}
				sort.Strings(paths)
			}
		}
		for _, p := range paths {
			var data []byte
			var err error
			name := p
			if p == "-" {
				name = "<stdin>"
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(p)
			}
			if err != nil {
				return nil, err
			}
			got, err := resource.Parse(name, data, mesh, defaultNS)
			if err != nil {
				return nil, err
			}
			objs = append(objs, got...)
		}
	}
	return objs, nil
}

// applyObjects applies objects one namespace at a time (each namespace is
// atomic). Every batch is first validated by its scope in a dry run, so a bad
// object anywhere rejects the whole apply before anything is committed.
func applyObjects(ctx context.Context, c *api.Client, objs []resource.Object, dryRun bool, out io.Writer) error {
	byNS := map[string][]resource.Object{}
	var order []string
	for _, o := range objs {
		if _, ok := byNS[o.Namespace]; !ok {
			order = append(order, o.Namespace)
		}
		byNS[o.Namespace] = append(byNS[o.Namespace], o)
	}
	for _, ns := range order {
		if _, err := c.Apply(ctx, byNS[ns], true, nil); err != nil {
			return fmt.Errorf("apply: namespace %s: %w (nothing was committed)", ns, err)
		}
	}
	for i, ns := range order {
		res, err := c.Apply(ctx, byNS[ns], dryRun, nil)
		if err != nil {
			if i > 0 {
				return fmt.Errorf("apply: namespace %s: %w (namespaces %s were committed)", ns, err, strings.Join(order[:i], ", "))
			}
			return fmt.Errorf("apply: namespace %s: %w", ns, err)
		}
		for _, o := range res.Objects {
			verb := "configured"
			switch {
			case o.Version < res.Revision:
				verb = "unchanged"
			case o.Created == o.Version:
				verb = "created"
			}
			if dryRun {
				verb += " (dry run)"
			}
			fmt.Fprintf(out, "%s/%s %s in %s\n", strings.ToLower(o.Kind), o.Name, verb, relative(o.Namespace, c.Mesh()))
		}
	}
	return nil
}

// printProxyDiffs asks every anchor what the dry run would change for the
// proxies connected to it, and prints it per proxy.
func printProxyDiffs(ctx context.Context, e *env, c *api.Client, objs []resource.Object) error {
	creds, err := identity.LoadCredentials(e.credentials)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	byNS := map[string][]resource.Object{}
	for _, o := range objs {
		byNS[o.Namespace] = append(byNS[o.Namespace], o)
	}
	seen := map[string]bool{}
	var diffs []*apipb.ProxyDiff
	for _, a := range st.Anchors {
		ac, err := api.Dial(a.Address, creds)
		if err != nil {
			continue
		}
		for _, batch := range byNS {
			res, err := ac.Apply(ctx, batch, true, nil)
			if err != nil {
				continue // unreachable anchors simply contribute nothing
			}
			for _, d := range res.ProxyDiffs {
				if !seen[d.Proxy] {
					seen[d.Proxy] = true
					diffs = append(diffs, d)
				}
			}
		}
		ac.Close()
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Proxy < diffs[j].Proxy })
	if len(diffs) == 0 {
		fmt.Fprintln(e.stdout, "no connected proxy of these scopes")
		return nil
	}
	for _, d := range diffs {
		if len(d.Changes) == 0 {
			fmt.Fprintf(e.stdout, "proxy %s: no change\n", d.Proxy)
			continue
		}
		fmt.Fprintf(e.stdout, "proxy %s: %d resource(s) would change\n", d.Proxy, len(d.Changes))
		for _, ch := range d.Changes {
			fmt.Fprintf(e.stdout, "  %s %s %s\n", ch.Change, ch.Type, ch.Name)
			for _, line := range strings.Split(strings.TrimRight(ch.Diff, "\n"), "\n") {
				if line != "" {
					fmt.Fprintf(e.stdout, "      %s\n", line)
				}
			}
		}
	}
	return nil
}
