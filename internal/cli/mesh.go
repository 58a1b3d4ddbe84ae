package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
)

// meshCmd groups mesh-wide administration.
func meshCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "mesh", Short: "Mesh-wide administration (the root CA)"}
	cmd.AddCommand(rotateRootCmd(e))
	return cmd
}

// rotateRootCmd is `canton mesh rotate-root`: the two phases of a root
// rotation without downtime (see docs/design/0003-scope-cas.md).
func rotateRootCmd(e *env) *cobra.Command {
	var caCert, caKey, currentKey string
	var finish, force bool
	cmd := &cobra.Command{
		Use:   "rotate-root [--ca-cert FILE --ca-key FILE] [--current-ca-key FILE] | --finish [--force]",
		Short: "Rotate the mesh root CA: add a new root beside the old one, then --finish to drop the old one",
		Long: `Phase add (no --finish): a new root (generated, or the offline root given with
--ca-cert/--ca-key, whose key is used once and never stored) is certified by the
current root with a cross certificate; the trust bundle becomes {old, new}; the
root scope's CA and every scope CA below it are re-issued under the new root.
Certificates issued from then on verify with the old bundle and the new one.
If the current root is offline (its key on no anchor), pass its key with
--current-ca-key. Run again without --ca-cert to resume an interrupted cascade.

Phase --finish: the old root leaves the bundle. Refused while a scope CA or an
anchor's certificate still chains only to the old root, or before the longest
workload certificate TTL (7 days) has passed since phase add. --force skips
that wait and BREAKS every workload whose certificate or bundle still holds
only the old root, until its next renewal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &apipb.RotateRootRequest{Finish: finish, Force: force}
			if finish && (caCert != "" || caKey != "" || currentKey != "") {
				return errors.New("mesh rotate-root: --finish takes no --ca-cert, --ca-key or --current-ca-key")
			}
			if force && !finish {
				return errors.New("mesh rotate-root: --force goes with --finish")
			}
			if (caCert == "") != (caKey == "") {
				return errors.New("mesh rotate-root: --ca-cert and --ca-key go together")
			}
			var err error
			read := func(path string) []byte {
				if path == "" || err != nil {
					return nil
				}
				var b []byte
				if b, err = os.ReadFile(path); err != nil {
					err = fmt.Errorf("mesh rotate-root: %w", err)
				}
				return b
			}
			req.NewRootCertPem, req.NewRootKeyPem, req.CurrentRootKeyPem = read(caCert), read(caKey), read(currentKey)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Raw().RotateRoot(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("mesh rotate-root: %w", api.Err(err))
			}
			var roots []string
			for _, der := range resp.Bundle {
				if cert, err := x509.ParseCertificate(der); err == nil {
					roots = append(roots, fmt.Sprintf("%s (serial %s)", cert.Subject.CommonName, cert.SerialNumber.Text(16)))
				}
			}
			phase := "added"
			if finish {
				phase = "finished"
			}
			fmt.Fprintf(e.stdout, "root rotation %s at revision %d: scope CAs chain to root %s; trust bundle: %s; rotated: %s\n",
				phase, resp.Revision, resp.RootSerial, strings.Join(roots, ", "), strings.Join(resp.RotatedScopes, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caCert, "ca-cert", "", "PEM certificate of an offline new root (self-signed, name-constrained to the mesh)")
	f.StringVar(&caKey, "ca-key", "", "PEM PKCS #8 key of the offline new root (used once, never stored)")
	f.StringVar(&currentKey, "current-ca-key", "", "PEM PKCS #8 key of the current root, when no anchor holds it (offline root)")
	f.BoolVar(&finish, "finish", false, "drop the old root from the trust bundle")
	f.BoolVar(&force, "force", false, "with --finish: do not wait for workload certificates of the old root to expire (breaks them)")
	return cmd
}
