package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
)

func getCmd(e *env) *cobra.Command {
	var (
		ns     string
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "get KIND [NAME] [-n NAMESPACE | -A] [-o yaml|json|wide]",
		Short: "Show resources (a linearizable read of the governing scope)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isProxyKind(args[0]) {
				return getProxies(cmd.Context(), e, args, ns, all)
			}
			k, ok := resource.Lookup(args[0])
			if !ok {
				return fmt.Errorf("get: unknown kind %q; known kinds: %s, proxy", args[0], kindNames())
			}
			switch output {
			case "", "wide", "yaml", "json":
			default:
				return fmt.Errorf("get: -o %q: want yaml, json or wide", output)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			var objs []resource.Object
			switch {
			case all:
				if len(args) == 2 {
					return fmt.Errorf("get: a NAME cannot be combined with -A")
				}
				objs, err = listAll(ctx, c, k.Name)
			default:
				name := ""
				if len(args) == 2 {
					name = args[1]
				}
				var res api.GetResult
				res, err = c.Get(ctx, k.Name, namespace(ns, c.Mesh()), name, "")
				objs = res.Objects
			}
			if err != nil {
				return fmt.Errorf("get: %w", err)
			}
			return printObjects(e.stdout, objs, output, c.Mesh(), len(args) == 2)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (relative to the mesh or absolute; default \"default\")")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace of every scope")
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml, json or wide")
	return cmd
}

func kindNames() string {
	var names []string
	for _, k := range resource.Kinds() {
		names = append(names, strings.ToLower(k.Name))
	}
	return strings.Join(names, ", ")
}

// listAll walks the scope tree from the root through delegations and lists
// kind in every namespace of every scope.
func listAll(ctx context.Context, c *api.Client, kind string) ([]resource.Object, error) {
	var out []resource.Object
	queue := []string{c.Mesh()}
	seen := map[string]bool{}
	for len(queue) > 0 {
		sc := queue[0]
		queue = queue[1:]
		if seen[sc] {
			continue
		}
		seen[sc] = true
		res, err := c.Get(ctx, kind, "", "", sc)
		if err != nil {
			return nil, fmt.Errorf("scope %s: %w", sc, err)
		}
		out = append(out, res.Objects...)
		dels, err := c.Get(ctx, "Delegation", "", "", sc)
		if err != nil {
			return nil, fmt.Errorf("scope %s: %w", sc, err)
		}
		for _, d := range dels.Objects {
			// The child scope is the Delegation's domain; its name is any name.
			t, err := resource.Typed(d)
			if err != nil {
				return nil, fmt.Errorf("scope %s: Delegation %s/%s: %w", sc, d.Namespace, d.Name, err)
			}
			spec, ok := t.(*resource.DelegationSpec)
			if !ok || spec.Domain == "" {
				return nil, fmt.Errorf("scope %s: Delegation %s/%s names no child domain", sc, d.Namespace, d.Name)
			}
			queue = append(queue, spec.Domain)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func printObjects(w io.Writer, objs []resource.Object, output, mesh string, single bool) error {
	switch output {
	case "yaml":
		for i, o := range objs {
			b, err := yaml.Marshal(resource.Manifest(o, mesh))
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			w.Write(b)
		}
		return nil
	case "json":
		var v any
		if single && len(objs) == 1 {
			v = resource.Manifest(objs[0], mesh)
		} else {
			items := make([]any, 0, len(objs))
			for _, o := range objs {
				items = append(items, resource.Manifest(o, mesh))
			}
			v = map[string]any{"kind": "List", "items": items}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if len(objs) == 0 {
		fmt.Fprintln(w, "No resources found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if output == "wide" {
		fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tVERSION\tCREATED\tUID\tSUMMARY")
	} else {
		fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tVERSION")
	}
	for _, o := range objs {
		if output == "wide" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", relative(o.Namespace, mesh), o.Kind, o.Name, o.Version, o.Created, dash(o.UID), summary(o))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", relative(o.Namespace, mesh), o.Kind, o.Name, o.Version)
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summary picks the fields users scan for in a wide listing.
func summary(o resource.Object) string {
	var spec map[string]any
	if json.Unmarshal(o.Spec, &spec) != nil {
		return "-"
	}
	var parts []string
	if len(o.VIPs) > 0 {
		parts = append(parts, "vip="+strings.Join(o.VIPs, ","))
	}
	for _, key := range []string{"hosts", "host", "domain", "anchors", "address", "service", "action", "target"} {
		if v, ok := spec[key]; ok {
			b, _ := json.Marshal(v)
			parts = append(parts, key+"="+string(b))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func deleteCmd(e *env) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME [-n NAMESPACE]",
		Short: "Delete a resource",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, ok := resource.Lookup(args[0])
			if !ok {
				return fmt.Errorf("delete: unknown kind %q; known kinds: %s", args[0], kindNames())
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n := namespace(ns, c.Mesh())
			if _, err := c.Delete(cmd.Context(), k.Name, n, args[1], nil); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			fmt.Fprintf(e.stdout, "%s/%s deleted from %s\n", strings.ToLower(k.Name), args[1], relative(n, c.Mesh()))
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (relative to the mesh or absolute; default \"default\")")
	return cmd
}

// getProxies lists the proxies connected to the anchors (every namespace
// unless -n is given).
func getProxies(ctx context.Context, e *env, args []string, ns string, all bool) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	defer c.Close()
	creds, err := identity.LoadCredentials(e.credentials)
	if err != nil {
		return err
	}
	list, unreachable, err := listProxies(ctx, c, creds)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	name := ""
	if len(args) == 2 {
		name = args[1]
	}
	filter := ""
	if ns != "" && !all {
		filter = namespace(ns, c.Mesh())
	}
	return printProxies(e.stdout, list, unreachable, name, filter, c.Mesh())
}
