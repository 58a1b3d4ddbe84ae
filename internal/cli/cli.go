package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/identity"
)

// Main runs the canton command with args and returns the process exit code.
// Errors are printed as one line on stderr.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "canton: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// env is what every command shares: streams and the client connection flags.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	server         string
	credentials    string
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "canton",
		Short:         "Canton: a service mesh whose namespace governs itself",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&e.server, "server", os.Getenv("CANTON_SERVER"), "anchor to talk to, HOST:PORT (env CANTON_SERVER)")
	pf.StringVar(&e.credentials, "credentials", os.Getenv("CANTON_CREDENTIALS"), "credentials file, e.g. DATA/admin.credentials (env CANTON_CREDENTIALS)")
	root.AddCommand(
		anchorCmd(e),
		demoCmd(e),
		applyCmd(e),
		getCmd(e),
		deleteCmd(e),
		lineageCmd(e),
		statusCmd(e),
		scopeCmd(e),
		proxyCmd(e),
		bareProxyCmd(e),
		resolveCmd(e),
		dnsCmd(e),
		renameCmd(e),
		meshCmd(e),
	)
	return root
}

// client dials the anchor named by --server with --credentials.
func (e *env) client() (*api.Client, error) {
	if e.server == "" {
		return nil, errors.New("no anchor to talk to: pass --server HOST:PORT or set CANTON_SERVER")
	}
	if e.credentials == "" {
		return nil, errors.New("no credentials: pass --credentials FILE or set CANTON_CREDENTIALS (an anchor writes admin.credentials into its data dir at bootstrap)")
	}
	creds, err := identity.LoadCredentials(e.credentials)
	if err != nil {
		return nil, err
	}
	return api.Dial(e.server, creds)
}

// namespace turns a -n value into an absolute namespace domain.
func namespace(ns, mesh string) string {
	ns = strings.TrimSuffix(strings.ToLower(ns), ".")
	if ns == "" {
		ns = "default"
	}
	if ns == mesh || strings.HasSuffix(ns, "."+mesh) {
		return ns
	}
	return ns + "." + mesh
}

// relative shows a namespace relative to the mesh, as users write it.
func relative(ns, mesh string) string {
	if r, ok := strings.CutSuffix(ns, "."+mesh); ok {
		return r
	}
	return ns
}
