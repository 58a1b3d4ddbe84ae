package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/scope"
)

func lineageCmd(e *env) *cobra.Command {
	var (
		sc     string
		verify bool
	)
	cmd := &cobra.Command{
		Use:   "lineage [--scope DOMAIN] [--verify]",
		Short: "Show a scope's hash-chained history of committed mutations; --verify recomputes it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if sc == "" {
				sc = c.Mesh()
			} else {
				sc = namespace(sc, c.Mesh())
			}
			resp, err := c.Lineage(cmd.Context(), sc, 0, 0)
			if err != nil {
				return fmt.Errorf("lineage: %w", err)
			}
			var recs []scope.Record
			if err := json.Unmarshal(resp.Records, &recs); err != nil {
				return fmt.Errorf("lineage: anchor %s sent malformed records: %w", resp.Anchor, err)
			}
			if verify {
				if err := scope.VerifyLineage(recs); err != nil {
					return fmt.Errorf("lineage of scope %s (from anchor %s) FAILED verification: %w", sc, resp.Anchor, err)
				}
				if n := len(recs); n > 0 && (recs[n-1].Index != resp.HeadIndex || recs[n-1].Hash != resp.HeadHash) {
					return fmt.Errorf("lineage of scope %s (from anchor %s) FAILED verification: head %d %s does not match the last record %d %s", sc, resp.Anchor, resp.HeadIndex, resp.HeadHash, recs[n-1].Index, recs[n-1].Hash)
				}
				fmt.Fprintf(e.stdout, "lineage of scope %s verified: %d records, head %d %s (anchor %s)\n", sc, len(recs), resp.HeadIndex, resp.HeadHash, resp.Anchor)
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "INDEX\tHASH\tPROPOSER\tCHANGE")
			for _, r := range recs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Index, short(r.Hash), r.Proposer, describe(r.Mutation))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&sc, "scope", "", "scope domain (default: the mesh root)")
	cmd.Flags().BoolVar(&verify, "verify", false, "recompute every hash and link; exit non-zero on any mismatch")
	return cmd
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// describe renders a mutation in a few words: "put VirtualService bookinfo/reviews".
func describe(canonical []byte) string {
	m, err := scope.Decode(canonical)
	if err != nil {
		return "(undecodable: " + err.Error() + ")"
	}
	switch m.Op {
	case scope.OpPut:
		s := "put"
		for _, o := range m.Objects {
			s += fmt.Sprintf(" %s %s/%s", o.Kind, o.Namespace, o.Name)
		}
		return s
	case scope.OpDelete:
		return fmt.Sprintf("delete %s %s/%s", m.Kind, m.Namespace, m.Name)
	case scope.OpGenesis:
		return fmt.Sprintf("genesis %s (parent %q, anchors %v)", m.Genesis.Domain, m.Genesis.Parent, m.Genesis.Anchors)
	case scope.OpExpireLeases, scope.OpRevokeLease:
		return fmt.Sprintf("%s %v", m.Op, m.LeaseIDs)
	}
	return string(m.Op)
}
